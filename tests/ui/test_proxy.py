"""The visitor's address behind the host's reverse proxies: a client cannot choose it."""

from __future__ import annotations

import pytest

from explorer.config import app_mode
from explorer.ui.proxy import client_address


def test_a_forged_entry_does_not_change_the_visitors_address() -> None:
    # one proxy (Caddy, nginx, a platform's router) appends the address it was reached from
    honest = client_address("203.0.113.7", "10.0.0.2", 1)
    forged = client_address("198.51.100.1, 203.0.113.7", "10.0.0.2", 1)  # the client sent its own header first
    many = client_address("1.1.1.1, 2.2.2.2, 3.3.3.3, 203.0.113.7", "10.0.0.2", 1)
    assert honest == forged == many == "203.0.113.7"


def test_two_proxies_take_the_entry_the_outer_one_added() -> None:
    # client -> CDN (adds the client) -> Caddy (adds the CDN) -> server
    assert client_address("198.51.100.1, 203.0.113.7, 192.0.2.9", "10.0.0.2", 2) == "203.0.113.7"
    assert client_address("203.0.113.7, 192.0.2.9", "10.0.0.2", 2) == "203.0.113.7"


def test_without_a_trusted_proxy_the_header_is_ignored() -> None:
    assert client_address("198.51.100.1", "203.0.113.7", 0) == "203.0.113.7"
    assert client_address("", None, 0) is None


def test_a_request_that_did_not_pass_every_proxy_keys_on_its_connection() -> None:
    assert client_address("", "203.0.113.7", 1) == "203.0.113.7"  # no header: not through the proxy
    assert client_address("192.0.2.9", "10.0.0.2", 2) == "10.0.0.2"  # fewer entries than proxies
    assert client_address("198.51.100.1, ", "10.0.0.2", 1) == "10.0.0.2"  # an empty last entry


def test_the_proxy_count_comes_from_the_environment() -> None:
    assert app_mode({}).trusted_proxies == 0
    assert app_mode({"EXPLORER_MODE": "demo", "EXPLORER_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    assert app_mode({"EXPLORER_TRUSTED_PROXY": "1"}).trusted_proxies == 1  # the old switch: one proxy
    with pytest.raises(ValueError, match="EXPLORER_TRUSTED_PROXIES='one'"):
        app_mode({"EXPLORER_TRUSTED_PROXIES": "one"})


def test_visitor_keys_share_the_unknown_and_count_ipv6_by_its_64() -> None:
    from explorer.ui.proxy import UNKNOWN_VISITOR, visitor_key

    assert visitor_key(None) == visitor_key("") == visitor_key("not an address") == UNKNOWN_VISITOR
    assert visitor_key("203.0.113.7") == "203.0.113.7" != visitor_key("203.0.113.8")
    rotated = {visitor_key(f"2001:db8:1:2:{i:x}::{i:x}") for i in range(1, 50)}
    assert rotated == {"2001:db8:1:2::/64"}  # one subscriber's /64, however it rotates
    assert visitor_key("2001:db8:1:3::1") != visitor_key("2001:db8:1:2::1")
    assert visitor_key("[2001:db8:1:2::9]") == visitor_key("2001:db8:1:2::1")
    assert visitor_key("::ffff:203.0.113.7") == "203.0.113.7"


def test_an_unknown_address_is_limited_like_any_other() -> None:
    import threading

    from explorer.ui.jobs import AlreadyRunning, JobQueue
    from explorer.ui.proxy import visitor_key

    gate = threading.Event()
    q = JobQueue(workers=1, max_per_client=2)
    for s in ("a", "b"):
        q.submit(s, lambda job: gate.wait(5), client=visitor_key(None))
    with pytest.raises(AlreadyRunning):
        q.submit("c", lambda job: None, client=visitor_key(None))  # a third session of unknown visitors
    q.submit("d", lambda job: None, client=visitor_key("203.0.113.7"))  # a known visitor is not held up
    gate.set()
