"""The CI recipes of docs/ci-gate.md run as written.

``docs/recipes/github-actions.yml`` and ``docs/recipes/gitlab-ci.yml`` are parsed as YAML
and checked for what the CI systems need (a trigger, a SARIF upload that runs after a
failed gate, a JUnit report); the page shows them verbatim. Then their shell steps run
with bash, unchanged, in a directory holding a ``leakaudit.yaml`` for the shipped demo
model and digits, with this checkout's ``leakaudit`` on ``PATH`` (the install steps are
only read: they must install from the repository with a CPU-only torch). GitLab's
artifact download is a ``curl`` stand-in that serves a previous report or fails as a
first pipeline's would. The gate must fail without a baseline and pass against an
unchanged one, and the SARIF file must satisfy the official schema.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_STD, TRAIN_SIZE
from tests.test_format_sarif import assert_valid_sarif

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "docs" / "recipes"
GITHUB = RECIPES / "github-actions.yml"
GITLAB = RECIPES / "gitlab-ci.yml"
CPU_TORCH = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"

#: The demo model on one digit per class, scoring the gradient norm only (fast), with a
#: rule every sample breaks: the gate fails unless a baseline already knows them.
DEMO_CONFIG = {
    "model": {
        "name": "lenet",
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 8,
        "checkpoint": str(DEMO_CHECKPOINT),
    },
    "data": {
        "kind": "digits",
        "mean": [DEMO_MEAN],
        "std": [DEMO_STD],
        "first": TRAIN_SIZE,
        "per_class": 1,
    },
    "scores": {"select": ["grad_norm"], "risk_score": "grad_norm"},
    "gate": {"rules": [{"score": "grad_norm", "threshold": 0.0, "max_fraction": 0.0}]},
}

#: ``curl --output FILE ...``: copy $SERVED_REPORT to FILE, or fail like a 404 when unset.
FAKE_CURL = """#!/bin/sh
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--output" ]; then out="$2"; fi
  shift
done
if [ -z "$SERVED_REPORT" ]; then echo "curl: (22) 404" >&2; exit 22; fi
cp "$SERVED_REPORT" "$out"
"""


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def github_steps() -> list[dict[str, Any]]:
    return load(GITHUB)["jobs"]["leakaudit"]["steps"]


def invokes_leakaudit(script: str) -> bool:
    return re.search(r"(^|\s)leakaudit scan ", script) is not None


def check_install(lines: list[str]) -> None:
    """CPU-only torch first, then leakaudit from a git URL or wheel (never from PyPI)."""
    pips = [line.strip() for line in lines if line.strip().startswith("pip install")]
    assert pips[0] == CPU_TORCH, pips
    assert len(pips) == 2 and '"${LEAKAUDIT_PIP_SPEC:?' in pips[1], pips
    assert not any(re.fullmatch(r"pip install leakaudit\b.*", p) for p in pips)


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A checkout-like directory with ``leakaudit.yaml``, and an environment whose
    ``PATH`` finds this checkout's ``leakaudit`` and the ``curl`` stand-in."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "leakaudit.yaml").write_text(yaml.safe_dump(DEMO_CONFIG))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shims = {
        "leakaudit": f'#!/bin/sh\nexec "{sys.executable}" -m leakaudit "$@"\n',
        "curl": FAKE_CURL,
    }
    for name, text in shims.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "CI_API_V4_URL": "https://gitlab.example/api/v4",
        "CI_PROJECT_ID": "1",
        "CI_DEFAULT_BRANCH": "main",
        "CI_JOB_NAME": "leakaudit",
        "CI_JOB_TOKEN": "token",
    }
    return work, env


def start(script: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """GitHub's ``run:`` shell (``bash -e``) and GitLab's script shell (pipefail too)."""
    return subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_the_page_shows_each_recipe_verbatim() -> None:
    page = (ROOT / "docs" / "ci-gate.md").read_text()
    for path in (GITHUB, GITLAB):
        assert f"```yaml\n{path.read_text()}```\n" in page, path.name
        assert f"(recipes/{path.name})" in page  # and links the file to copy


def test_github_recipe_is_a_complete_workflow() -> None:
    wf = load(GITHUB)
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as True
    assert set(on) == {"push", "pull_request"}
    assert wf["permissions"]["security-events"] == "write"
    job = wf["jobs"]["leakaudit"]
    assert job["runs-on"] and job["env"]["LEAKAUDIT_PIP_SPEC"] == "${{ vars.LEAKAUDIT_PIP_SPEC }}"
    steps = job["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    order = ["actions/checkout", "actions/setup-python", "actions/cache/restore"]
    assert [u for u in uses if u in order] == order
    scan = next(i for i, s in enumerate(steps) if invokes_leakaudit(s.get("run", "")))
    assert "--format sarif --output leakaudit.sarif" in steps[scan]["run"]
    upload = uses.index("github/codeql-action/upload-sarif")
    assert upload > scan and steps[upload]["if"].startswith("always()")
    assert steps[upload]["with"]["sarif_file"] == "leakaudit.sarif"
    save = uses.index("actions/cache/save")  # after a passing run on main only
    assert save > scan and "always()" not in steps[save]["if"]
    assert steps[save]["with"]["path"] == "baseline.json"
    install = [s["run"] for s in steps if "pip install" in s.get("run", "")]
    assert len(install) == 1
    check_install(install[0].splitlines())


def test_gitlab_recipe_reports_junit_and_keeps_the_json_report() -> None:
    job = load(GITLAB)["leakaudit"]
    check_install(job["before_script"])
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "leakaudit.xml"
    assert "leakaudit-report.json" in job["artifacts"]["paths"]
    assert any("--format junit --output leakaudit.xml" in line for line in job["script"])


def test_recipes_fail_on_new_findings_and_pass_against_an_unchanged_baseline(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    work, env = workdir
    steps = github_steps()
    gate = next(s["run"] for s in steps if invokes_leakaudit(s.get("run", "")))
    keep = next(s["run"] for s in steps if s.get("name", "").startswith("This report becomes"))
    gitlab = "\n".join(load(GITLAB)["leakaudit"]["script"])
    lab = work.parent / "lab"
    shutil.copytree(work, lab)

    # A first run: no baseline anywhere, so every risky sample is new.
    github, gitlab_first = start(gate, work, env), start(gitlab, lab, env)
    code, err = finish(github)
    assert code == 1 and "gate failed: 10 risky samples" in err, err
    log = json.loads((work / "leakaudit.sarif").read_text())
    assert_valid_sarif(log)
    results = log["runs"][0]["results"]
    assert len(results) == 10 and {r["level"] for r in results} == {"error"}
    code, err = finish(gitlab_first)
    assert code == 1 and "curl: (22)" in err and not (lab / "baseline.json").exists(), err
    failures = ET.parse(lab / "leakaudit.xml").getroot().iter("failure")
    assert len(list(failures)) == 1

    # The next runs: the last report is the baseline (restored cache / downloaded artifact).
    shutil.copy(work / "leakaudit-report.json", work / "baseline.json")
    served = {**env, "SERVED_REPORT": str(work / "leakaudit-report.json")}
    github, gitlab_next = start(gate, work, env), start(gitlab, lab, served)
    code, err = finish(github)
    assert code == 0 and "10 known risky in the baseline" in err, err
    results = json.loads((work / "leakaudit.sarif").read_text())["runs"][0]["results"]
    assert {(r["level"], r["baselineState"]) for r in results} == {("note", "unchanged")}
    code, err = finish(gitlab_next)
    assert code == 0 and (lab / "baseline.json").is_file(), err
    assert not list(ET.parse(lab / "leakaudit.xml").getroot().iter("failure"))

    # On main the passing report replaces the baseline the cache saves.
    assert finish(start(keep, work, env))[0] == 0
    assert (work / "baseline.json").read_bytes() == (work / "leakaudit-report.json").read_bytes()
