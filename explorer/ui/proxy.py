"""The visitor's address behind the host's own reverse proxies, from `X-Forwarded-For`.

Each proxy appends the address it was reached from, so with N trusted proxies in front of the
server the visitor's address is the N-th entry from the right: the one the outermost trusted
proxy added. Everything to its left came from the client and can be anything (the rule of
Werkzeug's ProxyFix, `x_for=N`). The leftmost entry, which a client sets at will, is never used.
"""

from __future__ import annotations


def client_address(forwarded_for: str, peer: str | None, trusted_proxies: int) -> str | None:
    """The address to key a visitor's limits on.

    Args:
        forwarded_for: the request's `X-Forwarded-For` header ("" when absent); several headers
            joined with commas, as servers pass them on.
        peer: the connection's address (the nearest proxy's, behind one); None when unknown.
        trusted_proxies: how many of the host's proxies stand in front of the server (0: none).

    Returns:
        With no trusted proxy, `peer`. Otherwise the entry the outermost trusted proxy added; when
        the header holds fewer entries than there are trusted proxies (a request that did not come
        through all of them), `peer`.
    """
    if trusted_proxies <= 0:
        return peer
    entries = [e.strip() for e in forwarded_for.split(",")] if forwarded_for.strip() else []
    if len(entries) < trusted_proxies or not entries[-trusted_proxies]:
        return peer
    return entries[-trusted_proxies]
