"""The dashboard's server, as Streamlit's public `st.App`: what app.py hands `streamlit run`.

`streamlit run app.py` (Community Cloud, tutorials, a `pip install .` user) and `scripts/run.sh`
start the same server: app.py defines `app = st.App(...)`, which Streamlit (1.5x and later) finds
and serves with uvicorn. That gives, without reaching into Streamlit's internals:

- the hover thumbnails' route (`thumbs.route`), a route of the server's own;
- a start-up hook (`lifespan`) that imports torch, torchvision, scikit-learn, plotly and UMAP
  and starts listing timm's and Hugging Face's models before the server answers anyone, so the
  first visitor after a restart does not wait for them, and the health check turns green only
  once the server is ready;
- the runtime made once (ui/runtime.py): the mode from the environment (`EXPLORER_MODE`), refused
  at start when unknown, the cache cleaned, the job queue and background threads;
- `runner.fastReruns` off whatever the host forced (state.keep_clicks), so no click is lost.

Each visitor's session runs `page.py`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

PAGE = Path(__file__).with_name("page.py")
log = logging.getLogger(__name__)


def preload() -> float:
    """Import what the first page needs; returns the seconds it took."""
    t = time.perf_counter()
    from ..process_setup import configure

    configure()
    import plotly.graph_objects  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torchvision.models.feature_extraction  # noqa: F401

    from .. import comparison  # noqa: F401
    from ..analysis.projection import umap_module
    from ..networks import registry

    # umap's import compiles numba functions: here, in one thread, not first in a worker beside other threads (in a
    # clean-clone CI run a first import in the warm-up thread failed with numba's "No definition for lowering", and
    # every UMAP job of that process after it); ~2 s with numba's cache warm
    umap_module()
    registry.list_models()
    return time.perf_counter() - t


def start_listing_models() -> None:
    """List timm's and Hugging Face's models in the background, for the picker (importing timm takes
    seconds; the server does not wait for it)."""
    from . import cached

    cached.start_catalog()


@contextlib.asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[None]:
    """The server's start: the mode checked, the libraries imported, the model listing started;
    uvicorn answers no request before this has run."""
    from . import runtime, state

    mode = runtime.start().mode  # refuses an unknown mode before anyone is served; cleans, makes the queue
    state.keep_clicks()  # runner.fastReruns off, whatever the host forced
    log.info("mode %s; libraries imported in %.1fs; serving", mode.name, preload())
    start_listing_models()
    yield


def routes() -> list:
    """The server's own routes beside Streamlit's: the hover thumbnails."""
    from . import thumbs

    return [thumbs.route()]
