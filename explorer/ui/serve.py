"""Start the dashboard with the heavy libraries already imported: `python -m explorer.ui.serve [streamlit options]`.

Streamlit runs app.py only when the first visitor connects, so that visitor would otherwise wait
for torch, torchvision, scikit-learn and plotly to import (several seconds on a small machine)
even when every result is cached on disk. Importing them here, before the server starts, moves
that wait to start-up, where nobody is looking. `--mode local|demo` sets the dashboard's mode
(config.AppMode, default local); the other options are passed to `streamlit run app.py`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from ..config import MODE_ENV, app_mode

APP = Path(__file__).resolve().parents[2] / "app.py"
log = logging.getLogger(__name__)


def preload() -> float:
    """Import what the first page needs; returns the seconds it took."""
    t = time.perf_counter()
    from ..process_setup import configure

    configure()
    import plotly.graph_objects  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torchvision.models.feature_extraction  # noqa: F401
    import umap  # noqa: F401  (its import compiles numba functions: here, in one thread, not first in a worker beside

    # other threads; in a clean-clone CI run a first import in the warm-up thread failed with numba's "No definition
    # for lowering", and every UMAP job of that process after it; ~2 s with numba's cache warm)
    from .. import comparison  # noqa: F401
    from ..models import registry

    registry.list_models()
    return time.perf_counter() - t


def start_listing_models() -> None:
    """List timm's and Hugging Face's models in the background, for the picker (importing timm takes
    seconds; the server does not wait for it)."""
    from . import cached

    cached.start_catalog()


def main(argv: list[str] | None = None) -> None:
    from ..process_setup import SERVER_LOG_FORMAT

    # this is the process entry point; app.py's basicConfig is then a no-op
    logging.basicConfig(level=logging.INFO, format=SERVER_LOG_FORMAT)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--mode" in args:  # ours, not Streamlit's: the app reads it from the environment
        i = args.index("--mode")
        os.environ[MODE_ENV] = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    mode = app_mode()  # refuses an unknown mode before the server starts
    log.info("mode %s; libraries imported in %.1fs; starting the server", mode.name, preload())
    start_listing_models()
    from streamlit.web import cli

    from . import thumbs

    thumbs.install()  # the hover thumbnails' route on Streamlit's server

    sys.argv = ["streamlit", "run", str(APP), *args]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
