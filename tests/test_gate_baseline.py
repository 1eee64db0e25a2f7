"""The CI gate end to end on real scans of the demo: a gate without rules, percentile
rules, ``--baseline`` (new/known/fixed), allowlist content hashes and expiry, per-rule
fractions, and the ``leakaudit init`` rule set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from leakaudit import api
from leakaudit.cli import app
from leakaudit.config import config_to_dict
from leakaudit.config.loading import parse_yaml
from leakaudit.config.template import TEMPLATE
from leakaudit.demo import demo_config
from leakaudit.resume import sample_digest
from tests.helpers_cli import assert_refused
from tests.test_schema_files import assert_matches

FAST = ["--first", "1200", "--per-class", "1", "--max-iter", "8", "--n-probes", "2",
        "--no-progress"]  # fmt: skip


def scan(*args: str):
    return CliRunner().invoke(app, ["scan", *FAST, *args])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A demo scan's JSON report with every score, the baseline of the tests below
    (never modified)."""
    path = tmp_path_factory.mktemp("base") / "base.json"
    result = scan("--demo", "--scores", "all", "--json", str(path))
    assert result.exit_code == 0, result.output
    return path, json.loads(path.read_text())


def grad_median(report: dict) -> float:
    return float(np.median([s["scores"]["grad_norm"] for s in report["samples"]]))


def edited(tmp_path: Path, report: dict, name: str, change) -> Path:
    doc = json.loads(json.dumps(report))
    change(doc)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_no_rules_is_not_configured_everywhere(tmp_path: Path) -> None:
    cfg = config_to_dict(demo_config())
    cfg["gate"]["rules"] = []
    config = tmp_path / "norules.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "r.json"
    result = scan("--config", str(config), "--json", str(out), "-f", "md")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## leakaudit scan: gate not configured")
    assert "gate passed" not in result.output and "✅" not in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("gate: not configured")
    report = json.loads(out.read_text())
    assert report["gate"]["configured"] is False and report["gate"]["passed"] is True
    assert_matches(report, "report")
    table = scan("--config", str(config), "-f", "table")
    assert "gate: not configured" in table.stdout and "gate: passed" not in table.stdout


def test_content_sha256_is_the_samples_digest(base: tuple[Path, dict]) -> None:
    _, report = base
    cfg = demo_config()
    cfg.data.first, cfg.data.per_class = 1200, 1  # the subset FAST scans
    dataset = api.load_inputs(cfg).dataset
    hashes = [s["content_sha256"] for s in report["samples"]]
    assert len(set(hashes)) == len(hashes) == len(dataset)
    for s in report["samples"]:
        assert s["content_sha256"] == sample_digest(*dataset[s["index"]]).hex()


def test_baseline_known_samples_do_not_fail_new_ones_do(
    base: tuple[Path, dict], tmp_path: Path
) -> None:
    path, report = base
    before = path.read_bytes()
    rule = f"grad_norm>{grad_median(report):.6g}"
    assert scan("--demo", "--fail-on", rule).exit_code == 1  # half the samples are risky
    out = tmp_path / "r.json"
    same = scan("--demo", "--fail-on", rule, "--baseline", str(path), "--json", str(out))
    assert same.exit_code == 0, same.output  # all of them offended in the baseline: known
    doc = json.loads(out.read_text())
    assert_matches(doc, "report")
    gate = doc["gate"]
    assert gate["baseline"]["sha256"] == hashlib.sha256(before).hexdigest()
    counts = gate["baseline"]["rules"][1]
    assert counts["new"] == 0 and counts["known"] == len(gate["rules"][1]["known"]) >= 4
    assert "known risky in the baseline" in same.stderr
    assert f"0/10 risky new ({counts['known']} known, 0 fixed) → pass" in same.stdout

    # A baseline where nothing offended (grad_norm 0; one sample very high, now lower):
    # every risky sample is new, and that one is fixed.
    def calm(doc: dict) -> None:
        for s in doc["samples"]:
            s["scores"]["grad_norm"] = 0.0
        doc["samples"][0]["scores"]["grad_norm"] = 1e9
        doc["samples"][0]["id"] = "old-name"

    low = edited(tmp_path, report, "calm.json", calm)
    worse = scan("--demo", "--fail-on", rule, "--baseline", str(low), "--json", str(out))
    assert worse.exit_code == 1 and "new risky samples" in worse.stderr
    counts = json.loads(out.read_text())["gate"]["baseline"]["rules"][1]
    assert counts["known"] == 0 and counts["new"] >= 4
    sample0_now = report["samples"][0]["scores"]["grad_norm"] > grad_median(report)
    assert counts["fixed"] == (0 if sample0_now else 1)  # matched by content, not the name
    assert path.read_bytes() == before


def test_percentile_of_the_baseline(base: tuple[Path, dict], tmp_path: Path) -> None:
    path, report = base
    out = tmp_path / "r.json"
    result = scan(
        "--demo", "--fail-on", "grad_norm>p50@baseline:100%", "--baseline", str(path),
        "--json", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rule = json.loads(out.read_text())["gate"]["rules"][1]
    assert rule["reference"] == "baseline" and rule["percentile"] == 50
    values = [s["scores"]["grad_norm"] for s in report["samples"]]
    assert rule["threshold"] == pytest.approx(np.percentile(values, 50, method="higher"))

    # Baseline values 10x smaller: the p50 threshold drops and every sample is new.
    def shrink(doc: dict) -> None:
        for s in doc["samples"]:
            s["scores"]["grad_norm"] /= 10
            s["id"], s["content_sha256"] = "x" + s["id"], None

    small = edited(tmp_path, report, "small.json", shrink)
    result = scan("--demo", "--fail-on", "grad_norm>p50@baseline:50%", "--baseline", str(small))
    assert result.exit_code == 1 and "p50@baseline" in result.stderr
    # @baseline without a baseline is refused.
    assert_refused(scan("--demo", "--fail-on", "grad_norm>p95@baseline"), "gate.baseline")


def test_baseline_refusals(base: tuple[Path, dict], tmp_path: Path) -> None:
    path, report = base
    before = path.read_bytes()
    arch = edited(tmp_path, report, "a.json", lambda d: d["model"].update({"class": "ResNet"}))
    assert_refused(scan("--demo", "--baseline", str(arch)), "--baseline", "architecture")
    kind = edited(tmp_path, report, "k.json", lambda d: d["dataset"].update({"kind": "cifar10"}))
    assert_refused(scan("--demo", "--baseline", str(kind)), "data kind")
    (tmp_path / "junk.json").write_text("not json")
    assert_refused(scan("--demo", "--baseline", str(tmp_path / "junk.json")), "--baseline")

    def drop(doc: dict) -> None:
        for s in doc["samples"]:
            del s["scores"]["lavp_gm"]

    nogm = edited(tmp_path, report, "nogm.json", drop)
    assert_refused(
        scan("--demo", "--baseline", str(nogm), "--fail-on", "lavp_gm>1"), "no lavp_gm scores"
    )
    assert_refused(scan("--demo", "--baseline", str(path), "--fail-on", "psnr>20"), "psnr")
    for flag in ("--json", "--output"):
        assert_refused(scan("--demo", "--baseline", str(path), flag, str(path)), "baseline report")
    assert path.read_bytes() == before


def test_allowlist_by_content_hash_and_expiry(base: tuple[Path, dict], tmp_path: Path) -> None:
    _, report = base
    top = min(report["samples"], key=lambda s: s["rank"])
    value = top["scores"]["grad_norm"]
    rule = {"score": "grad_norm", "threshold": value * 0.999, "risky_when": "above"}
    cfg = config_to_dict(demo_config())

    def run(entry: dict) -> tuple[object, dict]:
        cfg["gate"] = {"rules": [rule], "allowlist": [entry]}
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(cfg))
        out = tmp_path / "r.json"
        result = scan("--config", str(config), "--json", str(out))
        return result, json.loads(out.read_text()) if out.exists() else {}

    assert scan("--demo", "--fail-on", f"grad_norm>{value * 0.999!r}").exit_code == 1
    by_hash = {"sha256": top["content_sha256"], "reason": "public image"}
    result, doc = run(by_hash)
    assert result.exit_code == 0, result.output
    assert doc["gate"]["rules"][0]["allowlisted"] == [top["id"]]
    assert_matches(doc, "report")
    result, doc = run({**by_hash, "expires": "2001-01-01"})
    assert result.exit_code == 1
    assert doc["gate"]["expired_allowlist"][0]["expires"] == "2001-01-01"
    assert any("expired on 2001-01-01" in w for w in doc["warnings"])
    assert "expired on 2001-01-01" in result.stderr
    result, _ = run({**by_hash, "expires": "2999-12-31"})
    assert result.exit_code == 0
    flag = scan("--demo", "--fail-on", f"grad_norm>{value * 0.999!r}",
                "--allow", f"sha256:{top['content_sha256']}=public")  # fmt: skip
    assert flag.exit_code == 0, flag.output


def test_fail_on_rules_with_their_own_fraction(base: tuple[Path, dict]) -> None:
    _, report = base
    t = f"{grad_median(report):.6g}"  # about half the samples are above
    assert scan("--demo", "--fail-on", f"grad_norm>{t}").exit_code == 1
    assert scan("--demo", "--fail-on", f"grad_norm>{t}:60%").exit_code == 0
    assert scan("--demo", "--fail-on", f"grad_norm>{t}:0.6").exit_code == 0
    # The rule's own fraction wins over --max-fraction; rules without one use it.
    mixed = ["--fail-on", f"grad_norm>{t}:0%", "--fail-on", "lavp_gm>-1e300", "--max-fraction", "1"]
    result = scan("--demo", *mixed)
    assert (
        result.exit_code == 1
        and "grad_norm >" in result.stderr
        and "lavp_gm" not in (result.stderr.split("gate failed")[-1])
    )
    assert_refused(scan("--demo", "--fail-on", "grad_norm>1:200%"), "--fail-on")


def test_init_template_gates_a_pasted_config(tmp_path: Path) -> None:
    template = parse_yaml(TEMPLATE)
    rules = template["gate"]["rules"]
    assert rules and all("threshold" not in r and "percentile" in r for r in rules)
    assert "# - score: psnr" in TEMPLATE
    cfg = config_to_dict(demo_config())
    cfg["gate"] = template["gate"]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "r.json"
    result = scan("--config", str(config), "--json", str(out))
    assert result.exit_code == 0, result.output
    gate = json.loads(out.read_text())["gate"]
    assert gate["configured"] and gate["rules"][0]["reference"] == "scan"
    assert result.stderr.strip().splitlines()[-1].startswith("gate passed (1 rule)")


def test_baseline_in_sarif_and_from_a_config_file(base: tuple[Path, dict], tmp_path: Path) -> None:
    path, report = base
    rule = f"grad_norm>{grad_median(report):.6g}"
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "base.json").write_bytes(path.read_bytes())
    cfg = config_to_dict(demo_config())
    cfg["gate"]["baseline"] = "reports/base.json"  # relative to the config file
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = scan("--config", str(config), "--fail-on", rule, "-f", "sarif")
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["runs"][0]["results"]
    known = [r for r in results if r.get("baselineState") == "unchanged"]
    assert known and all(r["level"] == "note" for r in known)
    assert not [r for r in results if r.get("baselineState") == "new"]


def test_redacted_content_hashes_are_keyed_and_still_allowlist(
    base: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, report = base
    monkeypatch.setenv("LEAKAUDIT_REDACT_KEY", "test-key")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    assert scan("--demo", "--redact", "--json", str(out)).exit_code == 0
    redacted = json.loads(out.read_text())["samples"]
    plain = {s["index"]: s["content_sha256"] for s in report["samples"]}
    for s in redacted:  # keyed: not the plain content hash, but as unique
        assert len(s["content_sha256"]) == 64 and s["content_sha256"] != plain[s["index"]]
    assert len({s["content_sha256"] for s in redacted}) == len(redacted)
    top = min(redacted, key=lambda s: s["rank"])
    rule = f"grad_norm>{top['scores']['grad_norm'] * 0.999!r}"
    assert scan("--demo", "--redact", "--fail-on", rule).exit_code == 1
    allow = f"sha256:{top['content_sha256']}=public"
    assert scan("--demo", "--redact", "--fail-on", rule, "--allow", allow).exit_code == 0
