"""Hostile configs and flags: each is refused with exit 2 and one ``error:`` line, fast,
or (a NaN score) can never make the gate pass. Every fixture is built here, at test time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit import distributed
from leakaudit.cli import app
from leakaudit.config import GateRule, load_config
from leakaudit.errors import ConfigError
from leakaudit.gate import evaluate_gate
from tests.helpers_cli import assert_refused

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--first", "1200", "--per-class", "1", "--max-iter", "4", "--n-probes", "1",
        "--no-progress"]  # fmt: skip
# The console script, run in a child process so that a hang fails the test instead of
# stalling the suite; it prints how long main() took, imports excluded.
TIMED_MAIN = (
    "import sys, time\n"
    "from leakaudit.cli import main\n"
    "sys.argv[0] = 'leakaudit'\n"
    "t = time.perf_counter()\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print(f'elapsed={time.perf_counter() - t:.3f}')\n"
)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def config_file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def billion_laughs(levels: int = 12, fan: int = 10) -> str:
    """10**12 strings under ``model.kwargs`` through nested YAML aliases."""
    lines = ["model:", "  name: lenet", "  kwargs:", '    l0: &l0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * fan)
        lines.append(f"    l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\ndata: {kind: digits}\n"


# --- 1. YAML aliases ---------------------------------------------------------------------


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, billion_laughs())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", TIMED_MAIN, "scan", "--config", cfg, "--no-progress"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "YAML aliases" in lines[0] and "refuses" in lines[0]
    elapsed = float(proc.stdout.strip().rsplit("elapsed=", 1)[1])
    assert elapsed < 5.0, elapsed


@pytest.mark.parametrize(
    "text",
    [
        "scores: {select: &s [grad_norm]}\ngate: {rules: []}\n",  # an anchor alone
        "base: &b {kind: digits}\n",  # an anchor on an unknown key: still refused first
        "data: &d {kind: digits}\nmodel: {kwargs: {x: *d}}\n",
        "x: &x {kind: digits}\ndata:\n  <<: *x\n",  # a merge key is an alias too
    ],
)
def test_anchors_and_aliases_are_refused(tmp_path: Path, text: str) -> None:
    cfg = config_file(tmp_path, text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"YAML aliases \(&/\*\), which leakaudit refuses"):
        load_config(cfg)
    assert time.perf_counter() - start < 1.0
    assert_refused(invoke("scan", "--config", cfg), "c.yaml", "YAML aliases")


def test_deeply_nested_config_is_refused(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "model: {kwargs: {x: " + "[" * 50_000 + "]" * 50_000 + "}}\n")
    assert_refused(invoke("scan", "--config", cfg), "c.yaml")


def test_huge_config_is_refused_before_parsing(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "model: {kwargs: {x: [" + "1, " * 2_000_000 + "1]}}\n")
    start = time.perf_counter()
    assert_refused(invoke("scan", "--config", cfg), "c.yaml", "too large")
    assert time.perf_counter() - start < 2.0


# --- 2. non-finite gate thresholds -------------------------------------------------------


@pytest.mark.parametrize("rule", ["grad_norm>nan", "grad_norm>inf", "i2f<-inf", "i2f<NaN"])
def test_non_finite_fail_on_threshold(rule: str) -> None:
    assert_refused(invoke("scan", "--demo", "--fail-on", rule, *FAST), f"--fail-on {rule!r}",
                   "finite")  # fmt: skip


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_max_fraction_flag(value: str) -> None:
    result = invoke("scan", "--demo", "--fail-on", "grad_norm>1", "--max-fraction", value, *FAST)
    assert_refused(result, "max_fraction")


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ("{score: grad_norm, threshold: .nan}", "gate.rules[0].threshold"),
        ("{score: grad_norm, threshold: .inf}", "gate.rules[0].threshold"),
        ("{score: i2f, threshold: -.inf}", "gate.rules[0].threshold"),
        ("{score: grad_norm, threshold: 1, max_fraction: .nan}", "gate.rules[0].max_fraction"),
        ("{score: grad_norm, threshold: 1, max_fraction: .inf}", "gate.rules[0].max_fraction"),
        ("{score: grad_norm, threshold: 1, max_fraction: 1.5}", "gate.rules[0].max_fraction"),
    ],
)
def test_non_finite_gate_rule_in_config(tmp_path: Path, rule: str, key: str) -> None:
    cfg = config_file(tmp_path, f"data: {{kind: digits, first: 4}}\ngate: {{rules: [{rule}]}}\n")
    assert_refused(invoke("scan", "--config", cfg, "--no-progress"), key)


# --- 3. a NaN score never passes the gate ------------------------------------------------


def test_nan_score_fails_its_rule_whatever_the_fraction() -> None:
    ids = [f"s{i}" for i in range(10)]
    grad = np.arange(10, dtype=np.float64)
    grad[3] = np.nan
    dirs = {"grad_norm": "higher_is_riskier", "i2f": "lower_is_riskier"}
    # No finite sample is beyond the threshold and 90% are tolerated, yet s3 was not measured.
    res = evaluate_gate(ids, {"grad_norm": grad}, [GateRule("grad_norm", 100.0, 0.9)], [], dirs)
    rule = res.rules[0]
    assert not rule.passed and not res.passed
    assert rule.non_finite == ["s3"] and rule.offending == ["s3"] and res.offending == ["s3"]
    grad[3] = np.inf  # infinities too, in either direction
    res = evaluate_gate(ids, {"grad_norm": grad}, [GateRule("grad_norm", 100.0, 0.9)], [], dirs)
    assert not res.passed and res.rules[0].non_finite == ["s3"]
    grad[3] = 3.0  # the same rule passes once the score is finite
    res = evaluate_gate(ids, {"grad_norm": grad}, [GateRule("grad_norm", 100.0, 0.9)], [], dirs)
    assert res.passed and res.rules[0].non_finite == []


def test_nan_score_fails_the_scan_end_to_end(monkeypatch) -> None:
    real = distributed.score_samples  # what api.scan's sharded scoring calls

    def poisoned(*args, on_chunk, **kwargs):
        def add(part):  # the first sample of every chunk comes out as NaN
            part.scores["grad_norm"][0] = float("nan")
            on_chunk(part)

        return real(*args, on_chunk=add, **kwargs)

    monkeypatch.setattr(distributed, "score_samples", poisoned)
    result = invoke("scan", "--demo", "--fail-on", "grad_norm>1e30", "--max-fraction", "0.5",
                    *FAST)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "non-finite" in result.stderr and "gate failed" in result.stderr


# --- 4. bad input that used to be an internal error --------------------------------------


def test_non_utf8_config(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, b"model:\n  name: \xff\xfe\n")
    assert_refused(invoke("scan", "--config", cfg), "c.yaml", "UTF-8")


@pytest.mark.parametrize(
    "value",
    ["-5", "0", ".nan", ".inf", "'1e400'", "'1e400GiB'", "lots", "'...'", "'nan'", "'-1GiB'",
     str(10**30), f"'{'9' * 400}GiB'", "2.5"],
)  # fmt: skip
def test_absurd_memory_budget(tmp_path: Path, value: str) -> None:
    text = f"data: {{kind: digits, first: 4}}\nscores: {{memory_budget: {value}}}\n"
    cfg = config_file(tmp_path, text)
    assert_refused(invoke("scan", "--config", cfg, "--no-progress"), "scores.memory_budget")


@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**200)])
def test_seed_out_of_range_flag(seed: str) -> None:
    assert_refused(invoke("scan", "--demo", "--seed", seed, *FAST), "scores.seed")


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_seed_out_of_range_config(tmp_path: Path, seed: str) -> None:
    cfg = config_file(tmp_path, f"data: {{kind: digits, first: 4}}\nscores: {{seed: {seed}}}\n")
    assert_refused(invoke("scan", "--config", cfg, "--no-progress"), "scores.seed")


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_seed_out_of_range_validate_flag(seed: str) -> None:
    assert_refused(invoke("validate", "--demo", "--seed", seed, "--no-progress"), "--seed")


def test_largest_seed_is_accepted(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, f"data: {{kind: digits}}\nscores: {{seed: {2**63 - 1}}}\n")
    assert load_config(cfg).scores.seed == 2**63 - 1


# --- 5. usage errors: one line -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["scan", "--no-such-flag"], ["--no-such-flag", "leakaudit scan --help"]),
        (["scan", "--chunk-size", "abc"], ["--chunk-size", "leakaudit scan --help"]),
        (["scan", "--device", "tpu"], ["--device", "leakaudit scan --help"]),
        (["scan", "--config"], ["--config", "leakaudit scan --help"]),
        (["nosuchcommand"], ["nosuchcommand", "leakaudit --help"]),
        (["--no-such-flag"], ["--no-such-flag", "leakaudit --help"]),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    assert_refused(invoke(*args), *needles)


def test_usage_error_one_line_from_the_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", TIMED_MAIN, "scan", "--chunk-size", "abc"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--chunk-size" in lines[0]


def test_help_version_and_exit_codes_still_work(tmp_path: Path) -> None:
    assert invoke("--version").exit_code == 0 and "leakaudit" in invoke("--version").stdout
    helped = invoke("scan", "--help")
    assert helped.exit_code == 0 and "--fail-on" in helped.stdout
    bare = invoke()  # no command: the help, exit 2 as before
    assert bare.exit_code == 2 and "scan" in bare.stdout
    out = tmp_path / "leakaudit.yaml"
    assert invoke("init", str(out)).exit_code == 0
    assert_refused(invoke("init", str(out)), "--force")  # a typer.Exit(2) passes through
