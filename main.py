"""Start the desktop app, or with a subcommand run headless work: `python main.py --help`."""
from __future__ import annotations

import sys


def _main() -> int:
    if len(sys.argv) > 1:
        from cli.main import main as cli_main
        return cli_main(sys.argv[1:])
    from app.main_window import run_app
    return run_app(sys.argv)


if __name__ == "__main__":
    sys.exit(_main())
