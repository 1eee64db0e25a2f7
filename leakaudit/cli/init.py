"""``leakaudit init``: write a commented configuration template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leakaudit.cli.console import handle_errors, stderr_console, stdout_console
from leakaudit.config.template import TEMPLATE
from leakaudit.errors import InputError
from leakaudit.report.files import check_writable, write_atomic


def init_command(
    path: Annotated[
        Path | None, typer.Argument(help="Where to write the template ('-' or none: stdout).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Write a commented configuration template."""
    with handle_errors(debug):
        if path is None or str(path) == "-":
            stdout_console().out(TEMPLATE, end="", highlight=False)
            return
        if path.exists() and not force:
            raise InputError(f"{path} exists; pass --force to overwrite it")
        check_writable(path)
        write_atomic(path, TEMPLATE)
        stderr_console().print(f"wrote {path}", markup=False)
