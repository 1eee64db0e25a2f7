"""Where the CLI writes, and how errors reach the user: one line on stderr."""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from leakaudit.errors import EXIT_RUNTIME, LeakauditError
from leakaudit.report.escape import printable


def stderr_console() -> Console:
    """A console on the current ``sys.stderr`` (progress, summary, errors)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = pipe_width()
    return console


#: Width of tables written to a pipe or file when ``COLUMNS`` does not say (a terminal
#: uses its own width).
PIPE_WIDTH = 200


def pipe_width() -> int:
    """``$COLUMNS`` when it is a sensible width (40 or more), else :data:`PIPE_WIDTH`."""
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) >= 40 else PIPE_WIDTH


def stdout_console() -> Console:
    """A console on the current ``sys.stdout`` (the report); wide when not a terminal."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = pipe_width()
    return console


def error_line(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    text = printable(" ".join(message.split()))
    stderr_console().print(f"error: {text}", markup=False, style="red")


def warning_line(message: str) -> None:
    """Print ``warning: <message>`` on stderr."""
    stderr_console().print(f"warning: {printable(message)}", markup=False, style="yellow")


@contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """Turn errors into one stderr line and an exit code (traceback only with ``--debug``).

    :class:`LeakauditError` exits with its own code (2 for input/config, 3 for runtime);
    anything else is a bug and exits 3; Ctrl-C exits 130.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    if debug or w.category.__module__.startswith("leakaudit"):
                        warning_line(str(w.message))
    except typer.Exit:
        raise
    except LeakauditError as exc:
        if debug:
            traceback.print_exc()
        error_line(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (rerun with --debug for the traceback)"
        error_line(f"internal error: {type(exc).__name__}: {exc}{hint}")
        raise typer.Exit(EXIT_RUNTIME) from None
