"""The ``leakaudit`` command and ``python -m leakaudit``.

``--version`` is answered here, before the command-line application (and torch) is
imported; everything else goes to :mod:`leakaudit.cli`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] == ["--version"]:
        from leakaudit import __version__

        print(f"leakaudit {__version__}")
        return
    from leakaudit.cli.app import app

    app(prog_name="leakaudit")


if __name__ == "__main__":
    main()
