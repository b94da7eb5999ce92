"""Text that visitors supply (file and class names, labels.csv values, link parameters), made safe to
put inside the Markdown that Streamlit renders."""

from __future__ import annotations

import re


def code(text: object) -> str:
    """`text` as a Markdown code span, on one line: shown exactly as written, never as a link (not
    even a bare URL, which GitHub-flavoured Markdown links even when its punctuation is escaped), an
    image, HTML or a Streamlit directive. The fence is longer than any run of backticks inside."""
    s = " ".join(str(text).split()) or " "
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    return f"{fence} {s} {fence}"  # CommonMark drops one space on each side


_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'^%@])")
# where GitHub-flavoured Markdown would start a link by itself (it finds bare URLs and addresses in
# the text after escapes are resolved): "scheme://", "www." and "@", as they read once escaped
_LINK_STARTS = re.compile(r"(\\:)(?=//)|(www)(?=\\\.)|(\\@)", re.IGNORECASE)


def plain(text: object) -> str:
    """`text` as Markdown that reads as itself in ordinary type, for a sentence that carries a
    visitor's words (a job's error names the file it refused): every ASCII punctuation is
    backslash-escaped (CommonMark lets any be), and a zero-width space breaks `://`, `www.` and
    `@`, so that no bare URL or e-mail address becomes a link."""
    escaped = _PUNCT.sub(r"\\\1", " ".join(str(text).split()))
    return _LINK_STARTS.sub(lambda m: m.group(0) + "\u200b", escaped)
