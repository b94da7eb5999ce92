"""Start the dashboard: `python -m explorer.ui.serve [--mode local|demo] [streamlit options]`.

The same server as `streamlit run app.py` (app.py's `st.App`: thumbnails, libraries imported before
the first visitor); this launcher only adds `--mode`, which sets `EXPLORER_MODE` (config.AppMode)
and is refused when unknown before anything starts; the runtime's first log line says which mode
it serves and why. Other options go to `streamlit run app.py`.

The server listens on loopback (127.0.0.1, .streamlit/config.toml): this machine only. Serving other
machines is a choice made by name, `--server.address 0.0.0.0`; a server reachable from them runs
demo mode unless `--mode local` is given too (config.app_mode: fail closed).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..config import MODE_ENV, app_mode

APP = Path(__file__).resolve().parents[2] / "app.py"
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--mode" in args:  # ours, not Streamlit's: the app reads it from the environment
        i = args.index("--mode")
        os.environ[MODE_ENV] = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    app_mode()  # refuses an unknown mode before the server starts (the runtime logs the mode it serves, and why)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *args]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
