"""The SARIF format: the gate's findings for code-scanning tools (GitHub, GitLab).

SARIF 2.1.0 (OASIS), one run:

- ``tool.driver.rules``: one rule per gate rule, with a stable id (:func:`rule_ids`);
- ``results``: one per risky sample of a rule (``RuleResult.offending``), level
  ``error`` when that rule failed the gate and ``warning`` when it tolerated the sample;
  allowlisted samples are results with an ``external`` suppression giving the reason;
- a result's location is the sample's image file when the sample is one (an imagefolder,
  not redacted): the path relative to the directory the scan ran in, with base id
  ``%SRCROOT%``; other samples (tensors, torchvision, digits, redacted ids) have a
  logical location named by their id, plus the tensor file when there is one;
- the report's warnings are the invocation's notifications.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any
from urllib.parse import quote

from leakaudit.gate import RuleResult
from leakaudit.report.document import Report, SampleRecord, clean
from leakaudit.report.escape import printable
from leakaudit.report.formats.interface import ReportFormat
from leakaudit.report.formats.markdown import fmt

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"

#: The tool's home page, as SARIF's ``informationUri``.
INFORMATION_URI = "https://leakaudit.dev"

#: The base id of result paths: the directory the scan ran in (a checkout's root in CI).
SRCROOT = "%SRCROOT%"

#: Data kinds whose sample ids are file paths relative to ``dataset.root``.
FILE_ID_KINDS = ("imagefolder",)

#: Data kinds whose ``dataset.root`` is one file holding every sample.
FILE_ROOT_KINDS = ("tensors",)

_HELP = (
    "leakaudit scores how well gradient inversion could reconstruct each training sample "
    "of a federated-learning client from the update it shares. This gate rule marks a "
    "sample risky when its {score} is {side} {threshold}; the gate fails when more than "
    "{fraction} of the samples are risky, or when a score could not be measured. To fix: "
    "strengthen the client's defence (e.g. a larger noise sigma), remove or augment the "
    "exposed samples, or allowlist a sample with a reason (gate.allowlist)."
)


def rule_ids(rules: list[RuleResult]) -> list[str]:
    """A stable id per rule: ``i2f-below-0.5``; a repeated one gets ``-2``, ``-3``..."""
    ids: list[str] = []
    for r in rules:
        value = f"p{r.percentile:g}" if r.percentile is not None else f"{r.threshold:g}"
        base = f"{r.score}-{r.risky_when}-{value}"
        rid, n = base, 1
        while rid in ids:
            n += 1
            rid = f"{base}-{n}"
        ids.append(rid)
    return ids


def _rule(rid: str, r: RuleResult) -> dict[str, Any]:
    text = _HELP.format(
        score=r.score,
        side=r.risky_when,
        threshold=f"{r.threshold:g}",
        fraction=f"{r.max_fraction:.0%}",
    )
    return {
        "id": rid,
        "name": "ExposedSample",
        "shortDescription": {"text": f"gate rule {r.describe()}"},
        "fullDescription": {"text": text},
        "help": {"text": text},
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "tags": ["privacy", "gradient-inversion"],
            "score": r.score,
            "risky_when": r.risky_when,
            "threshold": r.threshold,
            "max_fraction": r.max_fraction,
        },
    }


def sample_uri(report: Report, sample_id: str) -> str | None:
    """The sample's file, relative to the directory the scan ran in, as a URI reference;
    ``None`` when the sample is not a file of its own (see module docs)."""
    root = report.dataset.get("root")
    kind = report.dataset.get("kind")
    if report.paths.get("redacted") or not isinstance(root, str):
        return None
    if kind in FILE_ID_KINDS:
        path = posixpath.join(root, sample_id)
    elif kind in FILE_ROOT_KINDS:
        path = root
    else:
        return None
    base = report.paths.get("base")
    if report.paths.get("base_from") == "cwd" and isinstance(base, str):
        path = posixpath.join(base, path)
    return quote(posixpath.normpath(path), safe="/")


def _location(report: Report, sample_id: str) -> dict[str, Any]:
    location: dict[str, Any] = {}
    uri = sample_uri(report, sample_id)
    if uri is not None:
        location["physicalLocation"] = {"artifactLocation": {"uri": uri, "uriBaseId": SRCROOT}}
    if report.dataset.get("kind") not in FILE_ID_KINDS or uri is None:
        name = printable(sample_id)
        location["logicalLocations"] = [{"name": name, "fullyQualifiedName": name}]
    return location


def _message(r: RuleResult, sample: SampleRecord, report: Report) -> str:
    value = sample.scores.get(r.score)
    measured = (
        f"{r.score} = {fmt(value)} {'<' if r.risky_when == 'below' else '>'} {r.threshold:g}"
        if value is not None
        else f"{r.score} could not be measured (not finite)"
    )
    outcome = "failed the gate" if not r.passed else "tolerated"
    return (
        f"Sample {printable(sample.id)} is exposed to gradient inversion: {measured} "
        f"(risk rank {sample.rank} of {len(report.samples)} by {report.risk['score']}, "
        f"percentile {fmt(sample.percentile)}); rule {r.describe()} {outcome} "
        f"({r.risky}/{r.considered} risky)."
    )


def _result(
    rid: str, index: int, r: RuleResult, sample: SampleRecord, report: Report, allowed: bool
) -> dict[str, Any]:
    fingerprint = hashlib.sha256(f"{rid}\0{sample.id}".encode()).hexdigest()
    result: dict[str, Any] = {
        "ruleId": rid,
        "ruleIndex": index,
        "level": "warning" if r.passed or allowed else "error",
        "message": {"text": _message(r, sample, report)},
        "locations": [_location(report, sample.id)],
        "partialFingerprints": {"leakauditSample/v1": fingerprint},
        "properties": {
            "sample_id": sample.id,
            "index": sample.index,
            "label": sample.label,
            "rank": sample.rank,
            "percentile": sample.percentile,
            "score": r.score,
            "value": sample.scores.get(r.score),
            "threshold": r.threshold,
            "scores": dict(sample.scores),
        },
    }
    if allowed:
        reasons = {e.get("sha256"): e["reason"] for e in report.gate.allowlist}
        reasons.update({e.get("id"): e["reason"] for e in report.gate.allowlist})
        reason = reasons.get(sample.id) or reasons.get(sample.content_sha256)
        result["suppressions"] = [{"kind": "external", "justification": reason or "allowlisted"}]
    return result


def sarif_log(report: Report) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (plain JSON data; non-finite numbers are null)."""
    rules = report.gate.rules
    ids = rule_ids(rules)
    by_id = {s.id: s for s in report.samples}
    results = []
    for k, (rid, r) in enumerate(zip(ids, rules)):
        compared = report.gate.baseline is not None
        for sid in r.offending:
            result = _result(rid, k, r, by_id[sid], report, allowed=False)
            if compared:
                result["baselineState"] = "new"
            results.append(result)
        for sid in r.known:  # offended in the baseline too: shown, never failing
            result = _result(rid, k, r, by_id[sid], report, allowed=False)
            result.update(level="note", baselineState="unchanged")
            results.append(result)
        for sid in r.allowlisted:
            results.append(_result(rid, k, r, by_id[sid], report, allowed=True))
    run = {
        "tool": {
            "driver": {
                "name": "leakaudit",
                "version": report.tool["version"],
                "semanticVersion": report.tool["version"],
                "informationUri": INFORMATION_URI,
                "rules": [_rule(rid, r) for rid, r in zip(ids, rules)],
            }
        },
        "invocations": [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {"level": "warning", "message": {"text": w}} for w in report.warnings
                ],
            }
        ],
        "results": results,
        "properties": {
            "gate": {"passed": report.gate.passed, "configured": report.gate.configured},
            "risk": dict(report.risk),
            "num_samples": len(report.samples),
            "dataset": {"kind": report.dataset.get("kind"), "root": report.dataset.get("root")},
            "paths": dict(report.paths),
            "report_schema_version": report.schema_version,
        },
    }
    return clean({"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]})


def render_sarif(report: Report) -> str:
    """The SARIF log as strict JSON text (no NaN), indented, ending in a newline."""
    log = sarif_log(report)
    return json.dumps(log, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


class SarifFormat(ReportFormat):
    """``sarif``: SARIF 2.1.0 for GitHub code scanning and GitLab (``top_k`` is ignored)."""

    name = "sarif"
    extension = ".sarif"

    def render(self, report: Report) -> str:
        return render_sarif(report)
