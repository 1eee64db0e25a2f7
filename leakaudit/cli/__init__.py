"""The command-line interface: ``leakaudit scan | init | validate``.

The only part of leakaudit that prints. Each command parses flags, builds a config,
calls :mod:`leakaudit.api`, formats the result and exits with a documented code.
"""

from __future__ import annotations

from leakaudit.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
