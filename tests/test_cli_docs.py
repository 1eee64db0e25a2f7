"""docs/cli.md documents every flag the CLI has, and only those; the report schema doc
names every top-level key of the schema."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from leakaudit.cli import app
from leakaudit.report.schema import REPORT_SCHEMA

DOCS = Path(__file__).resolve().parent.parent / "docs"


def cli_flags() -> set[str]:
    command = typer.main.get_command(app)
    flags = {o for param in command.params for o in param.opts if o.startswith("--")}
    for name in ("scan", "init", "calibrate"):  # validate documents its own flags
        for param in command.commands[name].params:  # type: ignore[attr-defined]
            flags.update(o for o in param.opts if o.startswith("--"))
    return flags - {"--help"}


def test_every_flag_is_documented_and_every_documented_flag_exists() -> None:
    text = (DOCS / "cli.md").read_text()
    documented = set(re.findall(r"`(--[a-z-]+)", text)) | set(re.findall(r"/(--[a-z-]+)", text))
    have = cli_flags()
    assert have - documented == set()
    assert documented - have - {"--version", "--no-progress"} == set()


def test_report_schema_doc_names_every_key() -> None:
    text = (DOCS / "report-schema.md").read_text()
    for key in REPORT_SCHEMA["properties"]:
        assert f"`{key}`" in text, key
