"""``leakaudit schema``: print the JSON Schema of a document leakaudit writes."""

from __future__ import annotations

from typing import Annotated

import typer

from leakaudit.cli.console import handle_errors, stdout_console
from leakaudit.errors import InputError
from leakaudit.registry import UnknownNameError
from leakaudit.report.schema import schema_names, schema_text


def schema_command(
    name: Annotated[
        str,
        typer.Argument(help=f"The document: {' | '.join(schema_names())}.", show_default=True),
    ] = "report",
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Print the JSON Schema (draft 2020-12) of the scan report or another document."""
    with handle_errors(debug):
        try:
            text = schema_text(name)
        except UnknownNameError as exc:
            raise InputError(str(exc)) from None
        stdout_console().out(text, end="", highlight=False)
