"""Config schema: YAML in, dataclasses out; errors name the key by its dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from leakaudit.api import score_options
from leakaudit.cli import app
from leakaudit.config import (
    DEFAULT_RISK_SCORE,
    ScanConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_bytes,
    with_overrides,
)
from leakaudit.config.template import TEMPLATE_RULES
from leakaudit.defenses import GaussianNoise, Pruning, make_defense
from leakaudit.errors import ConfigError


def test_init_template_parses_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "leakaudit.yaml"
    result = CliRunner().invoke(app, ["init", str(path)])
    assert result.exit_code == 0, result.output
    cfg = load_config(path)
    defaults = ScanConfig()
    # Everything but the paths (resolved against the file's folder) equals the defaults.
    assert cfg.data.root == str(tmp_path / "data/")
    cfg.data.root = defaults.data.root = None
    # ... and the gate, which ships a percentile rule (the default: no rules).
    assert cfg.gate.rules == TEMPLATE_RULES and defaults.gate.rules == []
    cfg.gate.rules = []
    assert config_to_dict(cfg) == config_to_dict(defaults)
    assert "#" in path.read_text()  # commented
    again = CliRunner().invoke(app, ["init", str(path)])
    assert again.exit_code == 2 and "--force" in again.output


def test_init_to_stdout_is_the_same_template(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0
    assert config_from_dict(yaml.safe_load(result.stdout)).scores.risk_score == DEFAULT_RISK_SCORE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"per_clas": 3}}, "data.per_clas: unknown key (did you mean per_class?)"),
        ({"modle": {}}, "modle: unknown key (did you mean model?)"),
        ({"scores": {"max_iter": "many"}}, "scores.max_iter: expected int, got str 'many'"),
        ({"scores": {"tol": True}}, "scores.tol: expected float"),
        ({"scores": {"device": "gpu"}}, "scores.device: expected one of 'auto' | 'cpu' | 'cuda'"),
        ({"scores": {"select": ["i2f", "lavp"]}}, "scores.select[1]: unknown score 'lavp'"),
        ({"scores": {"risk_score": "i2f", "select": ["grad_norm"]}}, "scores.risk_score:"),
        ({"scores": {"directions": {"i2f": "up"}}}, "scores.directions.i2f: expected one of"),
        ({"data": {"first": 0}}, "data.first: must be >= 1"),
        ({"data": {"mean": "0.5"}}, "data.mean: expected a list of float or null"),
        ({"defense": {"kind": "gausian"}}, "defense.kind: unknown defense 'gausian' (did you mean"),
        (
            {"defense": {"kind": "dp", "params": {"clip": 1.0}}},
            "defense.params: defense 'dp' needs",
        ),
        (
            {"defense": {"kind": "gaussian", "params": {"sigma": -1}}},
            "defense.params.sigma: must be >= 0, got -1.0",
        ),
        (
            {"defense": {"kind": "dp", "params": {"clip": 0, "sigma": 1}}},
            "defense.params.clip: must be > 0, got 0.0",
        ),
        (
            {"defense": {"kind": "pruning", "params": {"ratio": 2}}},
            "defense.params.ratio: must be in [0, 1], got 2.0",
        ),
        (
            {"defense": {"kind": "gaussian", "params": {"sgima": 1}}},
            "defense.params.sgima: defense 'gaussian' has no parameter 'sgima'; it takes: sigma",
        ),
        ({"defense": {"target_error": 0}}, "defense.target_error: must be > 0"),
        ({"scores": {"tol": 0}}, "scores.tol: must be > 0, got 0.0"),
        ({"scores": {"n_probes": 0}}, "scores.n_probes: must be >= 1, got 0"),
        ({"scores": {"seed": -1}}, "scores.seed: must be an integer in [0, 2**63 - 1]"),
        ({"scores": {"chunk_size": 0}}, "scores.chunk_size: must be >= 1, got 0"),
        ({"scores": {"memory_budget": "lots"}}, "scores.memory_budget: expected bytes like"),
        ({"gate": {"rules": [{"score": "i2f"}]}}, "gate.rules[0].threshold: required key"),
        (
            {"gate": {"rules": [{"score": "i2f", "threshold": 1, "max_fraction": 1.5}]}},
            "gate.rules[0].max_fraction: must be in [0, 1]",
        ),
        ({"gate": {"allowlist": [{"id": "a", "reason": " "}]}}, "gate.allowlist[0].reason:"),
        ({"gate": {"allowlist": [{"id": "a"}]}}, "gate.allowlist[0].reason: required key"),
        ({"output": "x"}, "output: expected a mapping"),
        (
            {
                "scores": {"select": ["grad_norm"], "risk_score": "grad_norm"},
                "gate": {"rules": [{"score": "i2f", "threshold": 1}]},
            },
            "gate.rules[0].score: the rule's score 'i2f' is not among the selected scores",
        ),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert message in str(info.value)


def test_yaml_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(
        "model: {name: models/net.py:build, checkpoint: w.pt}\ndata: {kind: tensors, root: x.npz}\n"
    )
    cfg = load_config(path)
    assert cfg.model.checkpoint == str(tmp_path / "sub" / "w.pt")
    assert cfg.data.root == str(tmp_path / "sub" / "x.npz")
    assert cfg.model.name == str(tmp_path / "sub" / "models/net.py") + ":build"


def test_overrides_are_validated_like_yaml() -> None:
    cfg = config_from_dict({"scores": {"select": ["grad_norm", "i2f"], "risk_score": "i2f"}})
    out = with_overrides(cfg, {"scores.device": "cpu", "output.top_k": 3, "data.first": None})
    assert (out.scores.device, out.output.top_k, out.data.first) == ("cpu", 3, None)
    assert cfg.scores.device == "auto"  # the original is untouched
    with pytest.raises(ConfigError, match=r"scores\.max_iter: expected int"):
        with_overrides(cfg, {"scores.max_iter": "ten"})


def test_defaults_and_defense_params() -> None:
    cfg = ScanConfig()
    assert cfg.scores.select == "auto"
    assert cfg.scores.risk_score == DEFAULT_RISK_SCORE
    assert cfg.defense.params == {"sigma": 0.01}
    assert config_from_dict({"defense": {"kind": "none"}}).defense.params == {}
    cfg = config_from_dict({"scores": {"directions": {"lavp_gm": "higher_is_riskier"}}})
    directions = cfg.scores.risk().directions
    assert directions["lavp_gm"] == "higher_is_riskier"
    assert directions["grad_norm"] == "higher_is_riskier"
    assert directions["i2f"] == "lower_is_riskier"


def test_score_options_names_the_key_of_a_value_changed_after_validation() -> None:
    cfg = ScanConfig()
    cfg.scores.max_iter = 0
    with pytest.raises(ConfigError, match=r"^scores\.max_iter: must be >= 1, got 0$"):
        score_options(cfg)
    cfg = ScanConfig()
    cfg.defense.params["sigma"] = -1.0
    with pytest.raises(ConfigError, match=r"^defense\.params\.sigma: must be >= 0"):
        score_options(cfg)


def test_make_defense_names_the_defence_and_parameter() -> None:
    with pytest.raises(ValueError, match=r"gaussian sigma must be >= 0, got -1\.0"):
        make_defense("gaussian", sigma=-1)
    with pytest.raises(ValueError, match="defense 'dp' needs parameter 'clip'"):
        make_defense("dp", sigma=1)
    with pytest.raises(ValueError, match="unknown defense 'gausian'"):
        make_defense("gausian")
    with pytest.raises(ValueError, match="defense 'laplace': scale must be a float"):
        make_defense("laplace", scale="wide")
    assert make_defense("gaussian") == GaussianNoise(0.01)
    assert make_defense("pruning", ratio="0.5") == Pruning(0.5)


def test_parse_bytes() -> None:
    assert parse_bytes("2GiB") == 2 * 1024**3
    assert parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes(1000) == 1000
    for bad in ("lots", "2 XB", 0):
        with pytest.raises(ValueError):
            parse_bytes(bad)
