"""Every model a user can name without a network, across sources, and searching it as one types."""

from __future__ import annotations

import fnmatch
import functools
import logging

from . import sources

log = logging.getLogger(__name__)

SEARCH_LIMIT = 200  # names a search returns at most (the picker shows this many matches)


@functools.cache
def _listed(source: str) -> tuple[str, ...]:
    """The names a source lists (its library imported once, on first use)."""
    probe = {"torchvision": "resnet50", "timm": "timm:x", "hf": "hf:x"}[source]
    return tuple(sources.source_of(probe).listed())


def all_names(source_names: tuple[str, ...] | None = None) -> list[str]:
    """Listed models of the given sources (all: torchvision, timm, hf), in that order. A source whose
    library fails to import is left out, with a warning in the log."""
    out: list[str] = []
    for src in source_names or ("torchvision", "timm", "hf"):
        try:
            out += _listed(src)
        except ImportError as exc:
            log.warning("the %s models are not listed: %s", src, exc)
    return out


def matches(name: str, query: str) -> bool:
    """True when every word of `query` is in `name` (any case), or `query` is an fnmatch pattern that
    matches the name with or without its source prefix."""
    if any(c in query for c in "*?["):
        bare = name.split(":", 1)[1] if ":" in name and sources.source_name(name) != "torchvision" else name
        return fnmatch.fnmatch(name, query) or fnmatch.fnmatch(bare, query)
    low = name.lower()
    return all(word in low for word in query.lower().split())


def search(query: str, sources: tuple[str, ...] | None = None, limit: int | None = SEARCH_LIMIT) -> list[str]:
    """Listed models whose names match `query` (all when it is empty), at most `limit`."""
    found = [n for n in all_names(sources) if matches(n, query)]
    return found if limit is None else found[:limit]


def availability(name: str) -> str:
    """`offline`, `download` or `none` for any model name (`none`: no pretrained weights known)."""
    return sources.source_of(name).availability(sources.canonical(name))
