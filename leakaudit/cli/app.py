"""The Typer application: one command per module, registered here."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

import leakaudit
from leakaudit.cli.calibrate import calibrate_command
from leakaudit.cli.console import error_line
from leakaudit.cli.init import init_command
from leakaudit.cli.options import DEFAULTS_NOTE, INPUT_KEYS, SCAN_KEYS, Keys, show_config_defaults
from leakaudit.cli.scan import scan_command
from leakaudit.cli.schema import schema_command
from leakaudit.cli.validate import validate_command
from leakaudit.errors import EXIT_USAGE

try:  # Typer >= 0.20 ships its own copy of Click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older Typer runs on Click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]


class LeakauditGroup(TyperGroup):
    """The root command, which reports a usage error (an unknown flag or command, a value
    of the wrong type) as one ``error:`` line and exit code 2 instead of Click's panel."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            # Not standalone: Click raises its errors here and returns the exit code of a
            # typer.Exit (--help, --version, a command's own code) instead of exiting.
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as exc:
            _usage_error(exc, self._command_path(args))
        except ClickException as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def _command_path(self, args: Sequence[str] | None) -> str:
        """``leakaudit scan`` when ``args`` name a command, else ``leakaudit``."""
        args = sys.argv[1:] if args is None else args
        return " ".join(["leakaudit", *(a for a in args[:1] if a in self.commands)])


def _usage_error(exc: UsageError, command_path: str) -> NoReturn:
    """``error: <message> (see leakaudit scan --help)`` on stderr, exit 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `leakaudit` alone: the help, on stdout
        typer.echo(exc.format_message())
        sys.exit(EXIT_USAGE)
    if exc.ctx is not None:
        command_path = exc.ctx.command_path
    error_line(f"{exc.format_message().rstrip('.')} (see {command_path} --help)")
    sys.exit(EXIT_USAGE)


def _with_config_defaults(keys: Keys) -> type[TyperCommand]:
    """A command class whose ``--help`` shows the configuration defaults of the flags in
    ``keys`` (the flags themselves default to ``None``: "keep the config's value")."""

    class ConfigDefaultsCommand(TyperCommand):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            show_config_defaults(self.params, keys)
            self.epilog = DEFAULTS_NOTE

    return ConfigDefaultsCommand


#: Plain Click help (``rich_markup_mode=None``): it wraps to the terminal's width
#: (``COLUMNS``), at most 120 columns, and never cuts a value short as Rich's tables do.
app = typer.Typer(
    cls=LeakauditGroup,
    name="leakaudit",
    help="Which samples of a federated-learning client can gradient inversion reconstruct?",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
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


def _command(name: str, function: Callable[..., None], keys: Keys | None = None) -> None:
    """Register a command; ``leakaudit --help`` lists it with its docstring's whole first
    paragraph (Click would cut it at about 45 characters with "...")."""
    summary = " ".join((function.__doc__ or "").split("\n\n")[0].split())
    cls = _with_config_defaults(keys) if keys is not None else TyperCommand
    app.command(name, cls=cls, short_help=summary)(function)


_command("scan", scan_command, {**INPUT_KEYS, **SCAN_KEYS})
_command("init", init_command)
_command("schema", schema_command)
_command("validate", validate_command, INPUT_KEYS)
_command("calibrate", calibrate_command, INPUT_KEYS)
