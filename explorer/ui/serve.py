"""Start the dashboard: `python -m explorer.ui.serve [--mode local|demo] [streamlit options]`.

The same server as `streamlit run app.py` (app.py's `st.App`: thumbnails, libraries imported before
the first visitor); this launcher only adds `--mode`, which sets `EXPLORER_MODE` (config.AppMode)
and is refused when unknown before anything starts, and says which mode it serves and why. Other
options go to `streamlit run app.py`.

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

LOCAL_ADDRESS = "127.0.0.1"  # .streamlit/config.toml's server.address: this machine only, unless a flag says otherwise

APP = Path(__file__).resolve().parents[2] / "app.py"
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--mode" in args:  # ours, not Streamlit's: the app reads it from the environment
        i = args.index("--mode")
        os.environ[MODE_ENV] = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    address = _flag(args, "--server.address")
    mode = app_mode(server_address=address if address is not None else LOCAL_ADDRESS)  # an unknown mode: refused before the server starts
    print(f"Bottleneck Explorer: {mode.name} mode ({mode.why})", file=sys.stderr, flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *args]
    sys.exit(cli.main())


def _flag(args: list[str], name: str) -> str | None:
    """A Streamlit option's value among the arguments (`--name value` or `--name=value`), else None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    main()
