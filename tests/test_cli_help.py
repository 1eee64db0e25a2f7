"""``--help`` reads at 80 columns: nothing cut off with "…", no line wider than the
terminal, and every option that has a default says which; shell completion scripts are
printed for bash, zsh and fish."""

from __future__ import annotations

import re
from dataclasses import is_dataclass
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.cli.options import INPUT_KEYS, SCAN_KEYS
from leakaudit.config import ScanConfig

COMMANDS = [[], ["scan"], ["init"], ["schema"], ["validate"], ["calibrate"]]


def help_text(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def flat(text: str) -> str:
    """The help with its wrapping undone (Click may break a line after a hyphen)."""
    return re.sub(r"(?<=-)\n\s+", "", re.sub(r"(?<=[^-])\n\s+", " ", text))


def config_default(key: str) -> Any:
    """The value of a dotted key in a configuration built from the schema's defaults."""
    value: Any = ScanConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return value


def shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "leakaudit")
def test_help_fits_the_terminal_and_cuts_nothing(args: list[str], columns: int) -> None:
    text = help_text(args, columns)
    usage = text.splitlines()[0]  # Click's own "[ARGS]..." there means "more arguments"
    assert usage.startswith("Usage: leakaudit")
    assert "…" not in text and "..." not in text[len(usage) :]
    widest = max(text.splitlines(), key=len)
    assert len(widest) <= columns, widest
    command = typer.main.get_command(app)
    if args:
        command = command.commands[args[0]]  # type: ignore[attr-defined]
    for param in command.params:  # every option, whole, with its whole help sentence
        for opt in param.opts:
            assert re.search(rf"(^|[\s,/]){re.escape(opt)}\b", text), opt
        if param.help:
            assert param.help.split(" [default")[0].split("  ")[0] in flat(text), param.name


def test_scan_help_shows_every_default_the_configuration_has() -> None:
    raw = help_text(["scan"], 80)
    text = flat(raw)
    keys = {**INPUT_KEYS, **SCAN_KEYS}
    expected = {
        name: shown(config_default(key))
        for name, (key, _) in keys.items()
        if config_default(key) is not None
        and config_default(key) is not False
        and not is_dataclass(config_default(key))
    }
    assert {"risk_score", "top_k", "fmt", "max_iter", "n_probes", "seed"} <= set(expected)
    flags = {p.name: p.opts for p in typer.main.get_command(app).commands["scan"].params}  # type: ignore[attr-defined]
    for name, value in expected.items():
        flag = max(flags[name], key=len)
        entry = re.search(rf"^  (-\w, )?{re.escape(flag)}\b.*?(?=\n  -|\Z)", raw, re.DOTALL | re.M)
        assert entry is not None and f"[default: {value}]" in flat(entry.group(0)), (flag, value)
    assert "[default: 0.0]" in text  # --max-fraction's own default
    assert "the defaults shown apply without one" in text


#: What each shell's completion script registers.
REGISTERS = {
    "bash": "complete -o default -F _leakaudit_completion leakaudit",
    "zsh": "#compdef leakaudit",
    "fish": "complete --command leakaudit",
}


@pytest.mark.parametrize("shell", sorted(REGISTERS))
def test_completion_scripts_for_each_shell(shell: str) -> None:
    env = {"_LEAKAUDIT_COMPLETE": f"source_{shell}"}  # what docs/cli.md tells users to run
    result = CliRunner().invoke(app, [], env=env, prog_name="leakaudit")
    assert result.exit_code == 0, result.output
    assert REGISTERS[shell] in result.stdout and "_LEAKAUDIT_COMPLETE=complete_" in result.stdout


def test_show_completion_prints_the_current_shells_script() -> None:
    result = CliRunner().invoke(app, ["--show-completion"], prog_name="leakaudit")
    assert result.exit_code == 0, result.output
    assert any(line in result.stdout for line in REGISTERS.values()), result.stdout


def test_completion_completes_commands_and_flags() -> None:
    env = {"_LEAKAUDIT_COMPLETE": "complete_bash", "COMP_WORDS": "leakaudit sc", "COMP_CWORD": "1"}
    result = CliRunner().invoke(app, [], env=env, prog_name="leakaudit")
    assert "scan" in result.stdout.split() and "init" not in result.stdout.split()
    env.update(COMP_WORDS="leakaudit scan --risk", COMP_CWORD="2")
    result = CliRunner().invoke(app, [], env=env, prog_name="leakaudit")
    assert result.stdout.split() == ["--risk-score"], result.output
