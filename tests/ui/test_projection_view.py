"""The projection view's Python side: the binary blob scatter.js reads, and the hover thumbnails'
route (tokens, lookups, what is served)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest

from explorer.output import points
from explorer.ui import thumbs

ROOT = Path(__file__).resolve().parents[2]


def _read(message: bytes) -> tuple[dict, bytes]:
    """Split a framed message the way scatter.js's `unpack` does."""
    n = int.from_bytes(message[:4], "little")
    head = json.loads(message[4 : 4 + n])
    assert head["data_offset"] % 4 == 0  # float32 views need 4-byte alignment
    return head, message[head["data_offset"] :]


def test_the_blob_holds_every_panel_the_hover_rows_and_the_names_in_order() -> None:
    rng = np.random.default_rng(0)
    panels = {"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(5, 2))}
    codes = np.array([0, 1, 1, 0, 2])
    predicted = [np.array([0, 1, -1, 0, 2]), np.array([1, 1, 1, 0, 2])]
    head, body = points.pack(
        panels,
        codes,
        ["x", "y", "z"],
        ["#000000", "#111111", "#222222"],
        [f"f{i}\nx" for i in range(5)],
        classes=["x", "y", "z"],
        truth=codes,
        predicted=predicted,
    )
    head, body = _read(points.frame(head, body))
    assert head["n"] == 5 and head["has_truth"] and head["has_predicted"] and not head["codes_per_panel"]
    at = 0
    for xy in panels.values():
        np.testing.assert_array_equal(np.frombuffer(body, "<f4", 10, at).reshape(5, 2), xy.astype(np.float32))
        at += 40
    np.testing.assert_array_equal(np.frombuffer(body, "<u2", 5, at), codes)  # colour codes
    np.testing.assert_array_equal(np.frombuffer(body, "<u2", 5, at + 10), codes)  # classes (hover)
    first = np.frombuffer(body, "<u2", 5, at + 20)
    assert first[2] == points.NOT_SCORED_CODE and first.tolist()[:2] == [0, 1]  # -1: not scored
    names = body[at + 40 :].decode().split("\n")
    assert names == [f"f{i} x" for i in range(5)]  # one line per image, whatever its name holds
    assert len(body) == at + 40 + head["names_bytes"]


def test_the_blob_refuses_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="one row per point"):
        points.pack({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))}, np.zeros(4), ["c"], ["#000000"], None)
    with pytest.raises(ValueError, match="one row of predictions per panel"):
        points.pack(
            {"a": np.zeros((4, 2))},
            np.zeros(4),
            ["c"],
            ["#000000"],
            None,
            classes=["c"],
            truth=np.zeros(4),
            predicted=[np.zeros(4), np.zeros(4)],
        )


class _Owner:
    pass


def test_a_thumbnail_token_lives_as_long_as_its_result() -> None:
    owner = _Owner()
    served = []
    token = thumbs.publish(owner, lambda i: served.append(i) or b"jpeg")
    assert thumbs.publish(owner, lambda i: b"other") == token  # one token per result
    assert thumbs.publish(_Owner(), lambda i: b"") != token
    assert thumbs.lookup(token)(3) == b"jpeg" and served == [3]
    assert len(token) >= 24  # random, not guessable from another visitor's
    del owner
    gc.collect()
    assert thumbs.lookup(token) is None  # the result is gone: so is its route


def test_the_route_serves_a_thumbnail_and_refuses_unknown_tokens() -> None:
    import asyncio

    from starlette.requests import Request

    owner = _Owner()
    token = thumbs.publish(owner, lambda i: b"\xff\xd8jpeg" if i < 2 else None)

    def get(tok: str, index: int):
        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/{thumbs.PATH}/{tok}/{index}",
            "headers": [],
            "path_params": {"token": tok, "index": index},
        }
        return asyncio.run(thumbs._handle(Request(scope)))

    ok = get(token, 1)
    assert ok.status_code == 200 and ok.media_type == "image/jpeg" and ok.body == b"\xff\xd8jpeg"
    assert get(token, 5).status_code == 404  # no such image
    assert get("not-a-token", 1).status_code == 404


def test_the_route_is_the_servers_own_and_turns_thumbnails_on(monkeypatch) -> None:
    monkeypatch.setattr(thumbs, "_installed", False)
    route = thumbs.route()
    assert route.path == f"/{thumbs.PATH}/{{token}}/{{index:int}}"
    assert thumbs.is_installed()  # the panels now ask for thumbnails


def test_app_py_is_an_st_app_with_that_route() -> None:
    """`streamlit run app.py` serves app.py's `st.App` (found by Streamlit's own discovery), and
    its routes hold the thumbnails'."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.app_name == "app", found
