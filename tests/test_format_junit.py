"""The ``junit`` format: JUnit XML with one test case per gate rule, read back with
:mod:`xml.etree`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.report.formats import FormatName, JunitFormat
from tests.test_report import hand_report

SMALL = ["--demo", "--first", "1200", "--per-class", "1", "--max-iter", "8", "--n-probes", "2",
         "--no-progress"]  # fmt: skip


def suite_of(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>') and text.endswith("\n")
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "leakaudit gate"
    return suites[0]


def render(report) -> str:
    fmt = FormatName("junit").to_format(top_k=1)
    assert isinstance(fmt, JunitFormat) and fmt.name == "junit"
    return fmt.render(report)


def test_one_testcase_per_rule_and_a_failure_naming_the_offending_samples() -> None:
    # i2f = [0.4, 2.0, 0.1, 3.0, 1.0, 0.7]; grad_norm = [0.5, 0.1, 0.9, 0.3, 0.2, 0.4]
    report = hand_report(
        gate={
            "rules": [
                {"score": "i2f", "threshold": 0.5},  # risky: 0, 2 → fails
                {"score": "grad_norm", "threshold": 0.45, "max_fraction": 0.5},  # passes
                {"score": "i2f", "threshold": 0.05},  # nobody risky → passes
            ]
        }
    )
    suite = suite_of(render(report))
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "i2f < 0.5 for at most 0%",
        "grad_norm > 0.45 for at most 50%",
        "i2f < 0.05 for at most 0%",
    ]
    assert {c.get("classname") for c in cases} == {"leakaudit.gate"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "0")
    failure = cases[0].find("failure")
    assert failure is not None and "2/6 samples risky" in failure.get("message", "")
    body = failure.text or ""
    assert "img/0.png" in body and "img/2.png" in body and "img/1.png" not in body
    assert body.index("img/2.png") < body.index("img/0.png")  # riskiest (i2f 0.1) first
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    assert "img/2.png" in (cases[1].findtext("system-out") or "")  # tolerated, still listed
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["gate.passed"] == "false" and props["risk_score"] == "lavp_gm"


def test_no_rules_is_one_skipped_case() -> None:
    suite = suite_of(render(hand_report()))
    cases = suite.findall("testcase")
    assert len(cases) == 1 and cases[0].get("name") == "gate not configured"
    assert cases[0].find("skipped") is not None and cases[0].find("failure") is None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "1")


def test_hostile_ids_keep_the_xml_well_formed() -> None:
    report = hand_report(gate={"rules": [{"score": "i2f", "threshold": 0.5}]})
    hostile = 'a<b>&"]]>\x1b[31m\x00.png'
    report.samples[0].id = hostile
    report.gate.rules[0].offending[0] = hostile
    text = render(report)
    body = suite_of(text).find("testcase/failure").text or ""  # type: ignore[union-attr]
    assert 'a<b>&"]]>\\x1b[31m\\x00.png' in body  # control characters shown escaped


def test_cli_junit_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "leakaudit.xml"
    args = ["scan", *SMALL, "--fail-on", "grad_norm>0", "--format", "junit"]
    result = CliRunner().invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 1, result.output  # grad_norm > 0 for every sample: fails
    assert result.stdout == ""
    suite = suite_of(out.read_text())
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["grad_norm > 0 for at most 0%"]
    assert (failed[0].find("failure").text or "").count("index:") == 10  # type: ignore[union-attr]
    piped = CliRunner().invoke(app, args)
    assert piped.exit_code == 1
    assert [c.get("name") for c in suite_of(piped.stdout).findall("testcase")] == [
        c.get("name") for c in suite.findall("testcase")
    ]
