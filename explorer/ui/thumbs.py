"""Hover thumbnails for the projection panels: a small HTTP route on Streamlit's own server.

A hover must show its image within a fraction of a second, which a Streamlit rerun cannot do, so
the browser asks `GET <base>/_explorer/thumb/<token>/<index>` directly. A token is random, made per
session and dataset (`publish`), so one visitor cannot ask for another visitor's images; what it
maps to is held weakly and forgotten when the result is dropped. Thumbnails are made when first
asked for, in a worker thread, through the same bounded cache as the image grids (images.thumbnail).

The route is one of the server's own routes, given to Streamlit's public `st.App(routes=...)` in
app.py, so `streamlit run app.py` serves it as `scripts/run.sh` does. Without it (AppTest, which
runs the page script alone) the hover shows the name, class and prediction only.
"""

from __future__ import annotations

import logging
import secrets
import threading
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)
PATH = "_explorer/thumb"
_installed = False
_lock = threading.Lock()
# token -> a function giving image i's JPEG bytes (or None); held weakly through its owner
_tokens: dict[str, Callable[[int], bytes | None]] = {}
_owners: dict[int, str] = {}  # id(owner) -> its token, while the owner lives


def publish(owner: object, thumbnail: Callable[[int], bytes | None]) -> str:
    """A token under which `thumbnail(i)` is served while `owner` lives (the same token for the same owner)."""
    with _lock:
        token = _owners.get(id(owner))
        if token is None:
            token = secrets.token_urlsafe(18)
            _owners[id(owner)] = token
            _tokens[token] = thumbnail
            weakref.finalize(owner, _forget, id(owner), token)
        return token


def _forget(owner_id: int, token: str) -> None:
    with _lock:
        _tokens.pop(token, None)
        if _owners.get(owner_id) == token:
            del _owners[owner_id]


def lookup(token: str) -> Callable[[int], bytes | None] | None:
    with _lock:
        return _tokens.get(token)


def is_installed() -> bool:
    return _installed


async def _handle(request):  # a Starlette endpoint
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    make = lookup(request.path_params["token"])
    if make is None:
        return Response(status_code=404)
    try:
        data = await run_in_threadpool(make, int(request.path_params["index"]))
    except (IndexError, ValueError):
        data = None
    if data is None:
        return Response(status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def route():  # -> starlette.routing.Route
    """The thumbnails' route, for the server's `st.App(routes=[...])` (app.py): from this call on,
    the panels ask for thumbnails. Under `server.baseUrlPath` when one is set (Streamlit's own routes
    are; an `st.App`'s own routes are taken as given)."""
    global _installed
    from starlette.routing import Route
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    prefix = f"/{base}" if base else ""
    _installed = True
    return Route(f"{prefix}/{PATH}/{{token}}/{{index:int}}", _handle, methods=["GET"])
