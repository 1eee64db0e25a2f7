"""Run several ``leakaudit`` commands, one after another, in each rank of one torchrun job
(one start-up for them all): ``torchrun ... tests/torchrun_job.py '<json list of argv>'``.
Each command's exit code is printed by rank 0 as ``exit <code>``."""

from __future__ import annotations

import json
import sys

from leakaudit.cli import app
from leakaudit.distributed import current_world


def main() -> None:
    for argv in json.loads(sys.argv[1]):
        try:
            app(argv, prog_name="leakaudit")
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        if current_world().main:
            print(f"exit {code}", flush=True)


if __name__ == "__main__":
    main()
