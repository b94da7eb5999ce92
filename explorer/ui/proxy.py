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


UNKNOWN_VISITOR = "unknown address"  # every visitor whose address is not known: one shared limit, never none


def visitor_key(address: str | None) -> str:
    """The key a visitor's limits count under: an IPv4 address as it is, an IPv6 address by its /64
    network (one subscriber is handed a whole /64 and may rotate addresses inside it; an IPv4 address
    mapped into IPv6 counts as that IPv4 address), and every unknown or unreadable address as one
    shared visitor, so a missing address never switches the limit off."""
    import ipaddress

    if not address:
        return UNKNOWN_VISITOR
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return UNKNOWN_VISITOR
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
