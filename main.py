"""Start the desktop app, or with a subcommand run headless work: `python main.py --help`."""
from __future__ import annotations

import sys


def _main() -> int:
    from core.quiet import quiet_native_logs
    quiet_native_logs()   # before anything can import TensorFlow; the app's worker processes inherit it
    if len(sys.argv) > 1:
        from cli.main import main as cli_main
        return cli_main(sys.argv[1:])
    from app.main_window import run_app
    return run_app(sys.argv)


if __name__ == "__main__":
    sys.exit(_main())
