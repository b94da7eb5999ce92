"""The dataset's images on the page: thumbnails (made when first looked at), grids of them, the
picked image, and the token the projection panels' hover thumbnails are served under."""

from __future__ import annotations

import functools
import io
import weakref

import streamlit as st

from ..data.datasets import ImageItem, thumbnail_bytes
from ..record import Comparison
from . import runtime, thumbs
from .text import plain


@functools.lru_cache(maxsize=4096)  # ~5 KB each: at most ~20 MB, whatever the dataset's size
def _thumbnail(item: ImageItem, max_pixels: int) -> bytes | None:
    return thumbnail_bytes(item, max_pixels=max_pixels)


def thumbnail(comp: Comparison, i: int) -> bytes | None:
    """Image i's thumbnail, made when first looked at (None: it can no longer be read)."""
    ds = comp.dataset
    if ds.thumbnails:
        return ds.thumbnails[i]
    return _thumbnail(ds.items[i], runtime.current().mode.limits.max_pixels)


def image_grid(comp: Comparison, indices: list[int], caption: bool = True, cols: int = 8) -> None:
    ds = comp.dataset
    if not indices:
        return
    grid = st.columns(cols)
    for j, i in enumerate(indices):
        with grid[j % cols]:
            label = ds.labels[i] if ds.labels is not None else ""
            data = thumbnail(comp, i)
            if data is None:
                st.caption(plain(f"{ds.names[i]}: no longer readable"))
            else:
                st.image(io.BytesIO(data), caption=plain(label) if caption else None, width="stretch")


def thumb_token(comp: Comparison) -> str:
    """The token under which this result's hover thumbnails are served (while the result lives)."""
    return thumbs.publish(comp, functools.partial(_hover_thumbnail, weakref.ref(comp)))


def _hover_thumbnail(ref: weakref.ref[Comparison], i: int) -> bytes | None:
    comp = ref()
    if comp is None or not 0 <= i < len(comp.dataset):
        return None
    return thumbnail(comp, i)


def picked_image(comp: Comparison, idx: int | None) -> None:
    ds = comp.dataset
    if idx is None:
        st.caption("Click a point to see its image here; box or lasso to select many.")
        return
    data = thumbnail(comp, idx)
    if data is not None:
        st.image(io.BytesIO(data), width="stretch")
    st.text(ds.names[idx])  # as text: file names come from visitors
    if ds.labels is not None:
        st.text(f"class: {ds.labels[idx]}")
    for column, values in ds.metadata.items():
        st.text(f"{column}: {values[idx]}")
