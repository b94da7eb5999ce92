"""Hover thumbnails for the projection panels: a small HTTP route on Streamlit's own server.

A hover must show its image within a fraction of a second, which a Streamlit rerun cannot do, so
the browser asks `GET <base>/_explorer/thumb/<token>/<index>` directly. A token is random, made per
session and dataset (`publish`), so one visitor cannot ask for another visitor's images; what it
maps to is held weakly and forgotten when the result is dropped. Thumbnails are made when first
asked for, in a worker thread, through the same bounded cache as the image grids (images.thumbnail).

The route is added to the list Streamlit 1.67's Starlette server builds (`create_streamlit_routes`,
an internal: `install` wraps it once and logs a warning, changing nothing, where it has moved).
Without it (AppTest, `streamlit run app.py`) the hover shows the name, class and prediction only.
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


def install() -> bool:
    """Add the thumbnail route to the server Streamlit is about to start (call before it starts)."""
    global _installed
    if _installed:
        return True
    try:
        from starlette.routing import Route
        from streamlit import config
        from streamlit.web.server.starlette import starlette_app
    except ImportError:  # pragma: no cover - a Streamlit without its Starlette server
        log.warning("hover thumbnails are off: this Streamlit has no Starlette server")
        return False
    original = getattr(starlette_app, "create_streamlit_routes", None)
    if original is None:
        log.warning("hover thumbnails are off: this Streamlit builds its routes elsewhere")
        return False

    def create_streamlit_routes(runtime):
        base = (config.get_option("server.baseUrlPath") or "").strip("/")
        prefix = f"/{base}" if base else ""
        return [Route(f"{prefix}/{PATH}/{{token}}/{{index:int}}", _handle, methods=["GET"]), *original(runtime)]

    starlette_app.create_streamlit_routes = create_streamlit_routes
    _installed = True
    return True
