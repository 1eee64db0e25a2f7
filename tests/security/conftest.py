"""Fixtures shared by the security tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.demo import DEMO_CHECKPOINT
from tests.test_cli_errors import FAST


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """A real report of a demo scan whose checkpoint is a copy the tests may replace."""
    where = tmp_path_factory.mktemp("scan")
    ckpt = where / "model.safetensors"
    shutil.copyfile(DEMO_CHECKPOINT, ckpt)
    path = where / "r.json"
    args = ["scan", "--demo", "--checkpoint", str(ckpt), *FAST, "--json", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), ckpt
