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
