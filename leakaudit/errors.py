"""Errors that reach the user as one clear line, and the exit codes they map to.

The CLI turns a :class:`LeakauditError` into its message on stderr and its
``exit_code``; anything else is a bug and exits 3 (a traceback only with ``--debug``).
"""

from __future__ import annotations

#: Exit codes, documented in the README.
EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class LeakauditError(Exception):
    """Base of every error leakaudit expects and explains."""

    exit_code: int = EXIT_RUNTIME


class InputError(LeakauditError):
    """A bad checkpoint, dataset, model or path given by the user (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(LeakauditError):
    """A bad configuration key, type or value (exit 2); the message names the key."""

    exit_code = EXIT_USAGE


class RuntimeFailure(LeakauditError):
    """The audit could not be completed (exit 3)."""

    exit_code = EXIT_RUNTIME
