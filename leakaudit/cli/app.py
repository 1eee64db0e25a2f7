"""The Typer application: one command per module, registered here."""

from __future__ import annotations

from typing import Annotated

import typer

import leakaudit
from leakaudit.cli.init import init_command
from leakaudit.cli.scan import scan_command

app = typer.Typer(
    name="leakaudit",
    help="Which samples of a federated-learning client can gradient inversion reconstruct?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"leakaudit {leakaudit.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Score, rank and gate the samples of a federated-learning client by their exposure to
    gradient inversion. Exit codes: 0 ok, 1 gate failed, 2 bad input, 3 runtime failure."""


app.command("scan")(scan_command)
app.command("init")(init_command)

try:  # the validate command lives in its own module (issue 4)
    from leakaudit.cli.validate import validate_command
except ModuleNotFoundError as exc:  # not there yet; anything else is a real error
    if exc.name != "leakaudit.cli.validate":
        raise
else:
    app.command("validate")(validate_command)
