"""Run ``leakaudit`` under ``torchrun`` with two ranks on the CPU (the distributed tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TORCHRUN = Path(sys.executable).with_name("torchrun")


def run_torchrun(
    tmp_path: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    restarts: int = 0,
    program: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node=2 PROGRAM ARGS`` in ``tmp_path``; the
    program is ``-m leakaudit`` unless given (a script path)."""
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", f"--max-restarts={restarts}"]
    root = str(Path(__file__).resolve().parents[1])
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root, **(env or {})}
    return subprocess.run(
        [*cmd, *(program or ["-m", "leakaudit"]), *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
