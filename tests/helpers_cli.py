"""Assertions on the CLI's results (``typer.testing.CliRunner``), shared by the test files."""

from __future__ import annotations

from typing import Any


def assert_refused(result: Any, *needles: str) -> str:
    """The command was refused as bad input: exit 2, no traceback, and stderr exactly one
    ``error:`` line that contains every needle.

    Returns:
        That line, for further checks.
    """
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
