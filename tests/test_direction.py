"""One orientation rule, the score registry's directions, and the risk resolved once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leakaudit.attacks import ATTACKS, REGISTRY
from leakaudit.config import GateRule, config_from_dict
from leakaudit.direction import orient, sign
from leakaudit.gate import rule_direction
from leakaudit.metrics.agreement import expected_sign, precision_at_k
from leakaudit.metrics.quality import METRICS
from leakaudit.models import BUILTIN_MODELS, MODELS
from leakaudit.report.ranking import risk_percentiles, risk_ranks
from leakaudit.scores.names import ALL_SCORES, SCORES, validate_score_names
from leakaudit.scores.risk import DEFAULT_RISK_SCORE, default_risk_score, resolve_risk
from leakaudit.validation.selection import stratified_indices

VALUES = [3.0, np.nan, 1.0, 3.0, -np.inf, 2.0, np.inf, 1.0]


def old_riskiness(values: list[float], direction: str) -> np.ndarray:
    """``report/ranking.riskiness`` and ``validation/selection.oriented_risk`` before they
    became :func:`orient`."""
    v = np.asarray(values, dtype=np.float64)
    return v if direction == "higher_is_riskier" else -v


@pytest.mark.parametrize("direction", ["higher_is_riskier", "lower_is_riskier"])
def test_orient_agrees_with_the_old_rule_on_ties_nan_and_inf(direction: str) -> None:
    expected = old_riskiness(VALUES, direction)
    np.testing.assert_array_equal(orient(VALUES, direction), expected)
    as_tensor = orient(torch.tensor(VALUES, dtype=torch.float32), direction)
    assert as_tensor.dtype == torch.float64 and as_tensor.device.type == "cpu"
    np.testing.assert_array_equal(as_tensor.numpy(), expected)


def test_ranking_puts_nan_and_inf_last_and_keeps_ties_in_order() -> None:
    # higher is riskier: 3.0 (pos 0) and 3.0 (pos 3) tie and keep dataset order; inf is
    # not finite, so it ranks last with NaN and -inf, in dataset order.
    assert risk_ranks(np.array(VALUES), "higher_is_riskier").tolist() == [1, 6, 4, 2, 7, 3, 8, 5]
    assert risk_ranks(np.array(VALUES), "lower_is_riskier").tolist() == [4, 6, 1, 5, 7, 3, 8, 2]
    pct = risk_percentiles(np.array(VALUES), "lower_is_riskier")
    assert np.isnan(pct[[1, 4, 6]]).all()
    assert pct[2] == pct[7] == 87.5 and pct[0] == pct[3] == 12.5  # ties share their mean


def test_selection_skips_non_finite_after_orienting() -> None:
    picked = stratified_indices(orient(torch.tensor(VALUES), "lower_is_riskier"), 10)
    assert picked.tolist() == [2, 7, 5, 0, 3]  # riskiest (smallest) first, ties in order


def test_signs_of_scores_metrics_and_gate_rules() -> None:
    assert sign("higher_is_riskier") == sign("higher_is_better") == 1
    assert sign("lower_is_riskier") == sign("lower_is_better") == -1
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        sign("sideways")
    assert expected_sign("lower_is_riskier", "higher_is_better") == -1
    assert rule_direction(GateRule("i2f", 0.5), "lower_is_riskier") == "below"
    assert rule_direction(GateRule("grad_norm", 1.0), "higher_is_riskier") == "above"
    assert rule_direction(GateRule("i2f", 0.5, risky_when="above"), "lower_is_riskier") == "above"
    with pytest.raises(ValueError, match="unknown direction"):
        precision_at_k([1, 2, 3], [1, 2, 3], 1, score_direction="up", metric_direction="down")


def test_every_score_is_registered_with_a_direction_and_needs() -> None:
    assert ALL_SCORES == SCORES.names() and len(ALL_SCORES) == 8
    for name, spec in SCORES.items():
        assert spec.name == name and spec.summary
        assert spec.direction in ("higher_is_riskier", "lower_is_riskier")
        assert spec.needs or name == "grad_norm"
    gm = SCORES["lavp_gm"]
    assert gm.plan_needs("max") == {"l2", "cos"}
    assert gm.plan_needs("min") == {"l2", "cos", "l2_min", "cos_min"}
    assert validate_score_names(["i2f", "grad_norm", "i2f"]) == ("grad_norm", "i2f")
    with pytest.raises(ValueError, match=r"unknown score 'i2g' \(did you mean i2f"):
        validate_score_names(["i2g"])


def test_metric_directions_live_on_the_metric() -> None:
    assert METRICS.names() == ("mse", "psnr", "ssim", "lpips")
    assert [METRICS[m].higher_is_better for m in METRICS] == [False, True, True, False]
    assert METRICS["psnr"].direction == "higher_is_better"
    assert METRICS["lpips"].direction == "lower_is_better"


def test_attacks_and_models_are_registries() -> None:
    assert ATTACKS == REGISTRY.names() == ("dlg", "idlg", "ig")
    assert BUILTIN_MODELS == MODELS.names() == ("lenet", "convnet", "resnet18", "resnet20")
    with pytest.raises(ValueError, match=r"unknown attack 'igg' \(did you mean ig"):
        REGISTRY["igg"]


def test_risk_is_resolved_once_with_one_default() -> None:
    assert DEFAULT_RISK_SCORE == "grad_norm"
    assert default_risk_score() == "grad_norm"
    assert default_risk_score(["i2f", "lavp_gm"]) == "lavp_gm"  # report order
    risk = resolve_risk(None, {"lavp_gm": "higher_is_riskier"})
    assert risk.score == "grad_norm" and risk.direction == "higher_is_riskier"
    assert risk.directions["lavp_gm"] == "higher_is_riskier"
    assert risk.directions["i2f"] == "lower_is_riskier"
    assert set(risk.directions) == set(ALL_SCORES)
    assert risk.source("lavp_gm") == "config" and risk.source("i2f") == "default"
    assert risk.only(["i2f", "grad_norm"]) == {
        "grad_norm": "higher_is_riskier",
        "i2f": "lower_is_riskier",
    }
    assert resolve_risk("lavp_gm", {"lavp_gm": "higher_is_riskier"}).to_dict() == {
        "score": "lavp_gm",
        "direction": "higher_is_riskier",
        "direction_source": "config",
    }
    with pytest.raises(ValueError, match="not among the given scores"):
        resolve_risk("i2f", available=["grad_norm"])
    with pytest.raises(ValueError, match="unknown score 'lavp'"):
        resolve_risk(None, {"lavp": "higher_is_riskier"})
    with pytest.raises(ValueError, match="direction 'up' is not"):
        resolve_risk(None, {"i2f": "up"})


def test_the_config_resolves_through_the_same_function() -> None:
    cfg = config_from_dict(
        {
            "scores": {
                "select": ["grad_norm", "i2f"],
                "risk_score": "i2f",
                "directions": {"i2f": "higher_is_riskier"},
            }
        }
    )
    assert cfg.scores.risk() == resolve_risk("i2f", {"i2f": "higher_is_riskier"}, ["i2f"])
