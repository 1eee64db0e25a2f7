"""``leakaudit.validate``: the typed peer of ``scan``. Scores come from a ``Report``, its
JSON document, a ``ScoreResult`` or a fresh scoring, and give the same selection."""

from __future__ import annotations

import json

import pytest
import torch

import leakaudit
from leakaudit.config import config_from_dict, config_to_dict, with_overrides
from leakaudit.errors import ConfigError, InputError

#: Ten demo samples (one per class), cheap scores, one short attack on three of them.
FAST_SCAN = {
    "data.per_class": 1,
    "scores.select": ["grad_norm", "i2f"],
    "scores.risk_score": "i2f",
    "scores.max_iter": 4,
    "scores.n_probes": 1,
}
FAST_ATTACK = {"attacks": ["dlg"], "budget": "fast", "n_samples": 3}


@pytest.fixture(scope="module")
def config():
    torch.set_num_threads(1)
    return with_overrides(leakaudit.demo_config(), FAST_SCAN)


@pytest.fixture(scope="module")
def report(config):
    return leakaudit.scan(config)


def test_report_json_and_fresh_scores_select_the_same_samples(config, report) -> None:
    from_report = leakaudit.validate(config, report, device="auto", **FAST_ATTACK)
    from_json = leakaudit.validate(config, json.loads(json.dumps(report.to_dict())), **FAST_ATTACK)
    fresh = leakaudit.validate(config, **FAST_ATTACK)
    assert from_report.config["scores_from"] == "scan report"
    assert fresh.config["scores_from"] == "scored now"
    assert from_report.config["device"] in ("cpu", "cuda:0", "cuda")  # "auto" resolved once
    assert from_report.risk_score == fresh.risk_score == "i2f"
    assert from_report.indices.tolist() == from_json.indices.tolist() == fresh.indices.tolist()
    assert from_report.ids == fresh.ids
    torch.testing.assert_close(from_report.scores["grad_norm"], fresh.scores["grad_norm"])


def test_a_score_result_is_used_as_is(config) -> None:
    from leakaudit.api import load_inputs, score_options

    inputs = load_inputs(config)
    result = leakaudit.score_samples(inputs.model, inputs.dataset, score_options(config))
    result.scores["grad_norm"] = torch.arange(len(inputs.ids), dtype=torch.float64)
    out = leakaudit.validate(config, result, risk_score="grad_norm", **FAST_ATTACK)
    assert out.config["scores_from"] == "scored now"
    assert out.indices.tolist()[0] >= len(inputs.ids) - 4  # the largest norms are riskiest
    torch.testing.assert_close(out.scores["grad_norm"], out.indices.double())


def test_validate_errors_are_config_and_input_errors(config, report) -> None:
    with pytest.raises(ConfigError, match="unknown attack"):
        leakaudit.validate(config, report, attacks=["gan"])
    with pytest.raises(ConfigError, match="unknown budget"):
        leakaudit.validate(config, report, budget="huge")
    with pytest.raises(ConfigError, match="not in the scan report"):
        leakaudit.validate(config, report, **{**FAST_ATTACK, "indices": [10**6]})
    no_samples = {**report.to_dict(), "samples": []}
    with pytest.raises(InputError, match="no samples"):
        leakaudit.validate(config, no_samples, **FAST_ATTACK)
    raw = config_to_dict(config)
    raw["model"].update(checkpoint=None, random_init=True)
    unseeded = config_from_dict(raw)
    with pytest.raises(ConfigError, match="no checkpoint"):
        leakaudit.validate(unseeded, report, **FAST_ATTACK)
