"""The JUnit XML format: the gate as a test suite, for CI test-report views (GitLab's
``artifacts:reports:junit``, Jenkins, Azure Pipelines).

One ``<testsuite name="leakaudit gate">`` in a ``<testsuites>`` root; one ``<testcase>``
per gate rule (``classname="leakaudit.gate"``, ``name`` the rule in words), with a
``<failure>`` listing the offending samples when the rule fails. A scan without rules
gives one skipped test case, ``gate not configured``. Sample ids are shown escaped
(:func:`~leakaudit.report.escape.printable`), so the XML stays well-formed whatever a
file name holds.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from leakaudit.gate import RuleResult
from leakaudit.report.document import Report, SampleRecord
from leakaudit.report.escape import printable
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.formats.markdown import fmt

SUITE = "leakaudit gate"
CLASSNAME = "leakaudit.gate"
NOT_CONFIGURED = "gate not configured"


def _sample_line(r: RuleResult, sample: SampleRecord) -> str:
    return (
        f"rank {sample.rank}: {printable(sample.id)} (label {sample.label}) "
        f"{r.score} = {fmt(sample.scores.get(r.score))}"
    )


def _tally(r: RuleResult) -> str:
    return (
        f"{r.risky}/{r.considered} samples risky ({r.fraction:.1%}; at most "
        f"{r.max_fraction:.0%} tolerated)"
        + (f", {len(r.non_finite)} with a non-finite {r.score}" if r.non_finite else "")
    )


def _case(suite: ET.Element, r: RuleResult, by_id: dict[str, SampleRecord]) -> None:
    case = ET.SubElement(suite, "testcase", classname=CLASSNAME, name=r.describe(), time="0")
    lines = sorted_lines(r, by_id)
    if not r.passed:
        failure = ET.SubElement(
            case, "failure", message=f"gate rule {r.describe()} failed: {_tally(r)}", type="gate"
        )
        failure.text = "\n".join(["offending samples, riskiest first:", *lines])
    out = [_tally(r)]
    if r.passed and lines:
        out += ["tolerated risky samples:", *lines]
    if r.allowlisted:
        out += ["allowlisted:", *(printable(i) for i in r.allowlisted)]
    ET.SubElement(case, "system-out").text = "\n".join(out)


def sorted_lines(r: RuleResult, by_id: dict[str, SampleRecord]) -> list[str]:
    """One line per offending sample of ``r``, by risk rank."""
    samples = sorted((by_id[i] for i in r.offending), key=lambda s: s.rank)
    return [_sample_line(r, s) for s in samples]


def render_junit(report: Report) -> str:
    """The gate as JUnit XML text (UTF-8, with its declaration), ending in a newline."""
    rules = report.gate.rules
    failures = sum(not r.passed for r in rules)
    counts = {
        "tests": str(max(len(rules), 1)),
        "failures": str(failures),
        "errors": "0",
        "skipped": "0" if rules else "1",
        "time": f"{report.summary.get('seconds', 0.0):.3f}",
    }
    root = ET.Element("testsuites", {"name": "leakaudit", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE, "timestamp": report.created, **counts})
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("leakaudit.version", report.tool["version"]),
        ("risk_score", report.risk["score"]),
        ("num_samples", str(len(report.samples))),
        ("gate.passed", str(report.gate.passed).lower()),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    by_id = {s.id: s for s in report.samples}
    for r in rules:
        _case(suite, r, by_id)
    if not rules:
        case = ET.SubElement(suite, "testcase", classname=CLASSNAME, name=NOT_CONFIGURED, time="0")
        ET.SubElement(case, "skipped", message="no gate rules configured (gate.rules, --fail-on)")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


class JunitFormat(ReportFormat):
    """``junit``: JUnit XML, one test case per gate rule (``top_k`` is ignored)."""

    name = "junit"
    extension = ".xml"

    def render(self, report: Report) -> str:
        return render_junit(report)
