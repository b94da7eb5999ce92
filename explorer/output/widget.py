"""The notebook view of a Comparison (`comp.show()`): every layer's projection side by side, drawn by
the dashboard's own scatter.js as an anywidget, with hover thumbnails served from the kernel and
lasso and box selection linked across the panels.

`selected` is two-way: a lasso in the browser sets it, and setting it from Python highlights those
images in every panel. The kernel sends the points once; a thumbnail is made when it is first
hovered (a custom message answered with its JPEG's bytes), as the dashboard's thumbnail route does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..config import Limits
from ..data.datasets import thumbnail_bytes
from .points import ASSETS, COLUMN, NEIGHBOURS_CHANGED, comparison_points, frame, panel_title

if TYPE_CHECKING:
    import pandas as pd

    from ..record import Comparison

JS_FILES = ("scatter_points.js", "scatter_index.js", "scatter.js", "scatter_widget.js")  # one module, in this order


class ComparisonWidget(anywidget.AnyWidget):
    """Every layer's projection of a Comparison, linked: hover an image to see it, lasso or box a
    group of images to select them in every panel.

    Args:
        comp: the comparison (made with a projection other than `none`).
        layers: the layer keys to show (default: every projected layer, in depth order).
        colour_by: `class`, `probe prediction`, `probe correct / wrong`, `neighbours changed`, or
            the name of a metadata column.
        align: rotate each panel onto the one before (Procrustes) so an image keeps its place.
        cols: panels per row (at most 4).

    Attributes:
        selected: the selected images' rows (a list of ints), read or set from Python.
        clicked: the row of the image clicked last (None before a click).
    """

    _esm = "\n".join((ASSETS / f).read_text() for f in JS_FILES)
    _css = (ASSETS / "scatter.css").read_text()
    points = traitlets.Bytes().tag(sync=True)
    selected = traitlets.List(traitlets.Int()).tag(sync=True)
    clicked = traitlets.Int(None, allow_none=True).tag(sync=True)
    thumbnails = traitlets.Bool(True).tag(sync=True)

    def __init__(
        self,
        comp: Comparison,
        *,
        layers: Sequence[str] | None = None,
        colour_by: str = "class",
        align: bool = True,
        cols: int = 4,
    ) -> None:
        if not comp.projections:
            raise ValueError("this comparison has no projections (projection='none'): compare with pca, umap or tsne")
        keys = [comp.key_of(k) for k in layers] if layers is not None else list(comp.projections)
        missing = [k for k in keys if k not in comp.projections]
        if missing:
            raise ValueError(f"layer {missing[0]!r} was not projected")
        by = colour_by
        if by in comp.dataset.metadata:
            by = COLUMN + by
        elif by not in ("class", "probe prediction", "probe correct / wrong", NEIGHBOURS_CHANGED):
            raise ValueError(
                f"colour_by={colour_by!r}: give class, probe prediction, probe correct / wrong, "
                f"{NEIGHBOURS_CHANGED} or a metadata column ({', '.join(comp.dataset.metadata) or 'none here'})"
            )
        panels = {k: v for k, v in comp.panels(align=align).items() if k in keys}
        head, body = comparison_points(
            comp, panels, by, titles={k: panel_title(comp, k) for k in panels}, aligned=align, cols=cols
        )
        has_images = any(it.path is not None or it.data is not None for it in comp.dataset.items[:1])
        super().__init__(points=frame({**head, "instance": f"widget-{id(self)}"}, body), thumbnails=has_images)
        self.comparison = comp
        self._max_pixels = Limits().max_pixels
        self.on_msg(self._answer)

    def _answer(self, _widget: Any, content: dict, _buffers: Any) -> None:
        """A hovered image's thumbnail, made on first request (no buffer when it cannot be read)."""

        if not isinstance(content, dict) or content.get("type") != "thumbnail":
            return
        try:
            i = int(content.get("index", -1))
        except (TypeError, ValueError):
            return
        items = self.comparison.dataset.items
        data = (
            thumbnail_bytes(items[i], max_pixels=self._max_pixels) if 0 <= i < len(items) and self.thumbnails else None
        )
        self.send({"type": "thumbnail", "index": i}, [data] if data else [])

    @traitlets.validate("selected")
    def _valid_selection(self, proposal: dict) -> list[int]:
        n = len(self.comparison.dataset) if hasattr(self, "comparison") else None
        rows = sorted({int(i) for i in proposal["value"]})
        if n is not None and rows and not (0 <= rows[0] and rows[-1] < n):
            raise traitlets.TraitError(f"selected rows must be between 0 and {n - 1}")
        return rows

    def select(self, selection: str | Sequence[int]) -> list[int]:
        """Select images in every panel: a class, `COLUMN=VALUE` of the metadata, or row indices."""
        rows = self.comparison.selection(selection) if isinstance(selection, str) else [int(i) for i in selection]
        self.selected = rows
        return list(self.selected)

    def selection(self) -> pd.DataFrame:
        """The selected images: index, path, label and the metadata columns."""
        import pandas as pd

        ds = self.comparison.dataset
        rows = list(self.selected)
        data: dict[str, Any] = {
            "index": rows,
            "path": [ds.names[i] for i in rows],
            "label": [ds.labels[i] for i in rows] if ds.labels is not None else [""] * len(rows),
        }
        for column, values in ds.metadata.items():
            data[column] = [values[i] for i in rows]
        return pd.DataFrame(data)
