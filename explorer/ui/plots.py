"""plotly on the page: the charts' shared configuration, and a selected point's customdata."""

from __future__ import annotations

PLOT_CONFIG = {"displaylogo": False}


def customdata(point: dict) -> list:
    """A selected point's customdata as a list (Streamlit hands arrays over as {"0": .., "1": ..})."""
    cd = point.get("customdata")
    if isinstance(cd, dict):
        return [cd[k] for k in sorted(cd, key=int)]
    return list(cd) if isinstance(cd, (list, tuple)) else []
