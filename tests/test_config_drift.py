"""The config and the engine cannot drift apart: one default, one set of choices, one
data spec and one defence per concept.

The conversions below (``select`` → tuple, ``dtype`` name → ``torch`` dtype, ``memory_budget``
text → bytes) are spelled out here on purpose, apart from the config's own table, so that
changing a default on one side only fails this file.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
import torch

from leakaudit.config import (
    DataConfig,
    DefenseConfig,
    ScanConfig,
    ScoresConfig,
    config_from_dict,
    format_bytes,
    parse_bytes,
)
from leakaudit.defenses import DEFENSES, GaussianNoise, make_defense, parameters
from leakaudit.io.datasets import DataSpec
from leakaudit.scores.names import ALL_SCORES
from leakaudit.scores.options import DTYPES, ScoreOptions

#: ``scores`` key → (ScoreOptions field, config value → engine value).
CONVERSIONS: dict[str, tuple[str, Any]] = {
    # auto and all both hand the engine every score: only api.scan narrows auto
    # (leakaudit.config.selection), so validate and calibrate still score everything.
    "select": ("scores", lambda v: ALL_SCORES if v in ("auto", "all") else tuple(v)),
    "dtype": ("dtype", lambda name: getattr(torch, name)),
    "memory_budget": ("memory_budget", parse_bytes),
}

#: The ``scores`` keys that are engine options; the rest (risk score, directions) are the
#: report's, and ``tol_min``, ``loss``, ``check_every`` are Python-API-only options.
SHARED = (
    "select", "gm_end", "n_probes", "max_iter", "tol", "dense_max_dim", "damping",
    "damping_mode", "seed", "device", "dtype", "chunk_size", "memory_budget", "backend",
    "model_mode", "local_steps", "local_lr",
)  # fmt: skip


def drift(cfg: ScoresConfig, engine: ScoreOptions) -> list[str]:
    """The shared keys whose config value is not the engine's."""
    out = []
    for key in SHARED:
        name, convert = CONVERSIONS.get(key, (key, lambda v: v))
        if convert(getattr(cfg, key)) != getattr(engine, name):
            out.append(key)
    return out


def test_the_shared_keys_are_every_config_key_the_engine_takes() -> None:
    options = {f.name for f in dataclasses.fields(ScoreOptions)}
    keys = [f.name for f in dataclasses.fields(ScoresConfig)]
    engine_keys = [k for k in keys if CONVERSIONS.get(k, (k,))[0] in options]
    assert tuple(engine_keys) == SHARED


def test_score_options_defaults_equal_the_config_defaults() -> None:
    assert drift(ScoresConfig(), ScoreOptions()) == []
    assert ScanConfig().score_options() == ScoreOptions()


def test_drift_is_caught_when_one_side_changes() -> None:
    assert drift(ScoresConfig(n_probes=16), ScoreOptions()) == ["n_probes"]
    assert drift(ScoresConfig(), ScoreOptions(memory_budget=10**9)) == ["memory_budget"]
    assert drift(ScoresConfig(dtype="float64"), ScoreOptions()) == ["dtype"]


def test_the_bridge_carries_every_shared_key() -> None:
    raw = {
        "select": ["grad_norm", "i2f"], "risk_score": "i2f", "gm_end": "min", "n_probes": 3,
        "max_iter": 7, "tol": 1e-6, "dense_max_dim": 0, "damping": 1e-2,
        "damping_mode": "absolute", "seed": 5,
        "device": "cpu", "dtype": "float64", "chunk_size": 4, "memory_budget": "512MB",
        "backend": "func", "model_mode": "train", "local_steps": 3, "local_lr": 0.25,
    }  # fmt: skip
    cfg = config_from_dict(
        {"scores": raw, "defense": {"kind": "dp", "params": {"clip": 1, "sigma": 0.5}}}
    )
    options = cfg.score_options()
    assert drift(cfg.scores, options) == []
    assert options.defense == make_defense("dp", clip=1.0, sigma=0.5)


def test_choices_are_the_engines() -> None:
    config_hints = typing.get_type_hints(ScoresConfig)
    engine_hints = typing.get_type_hints(ScoreOptions)
    for key in ("gm_end", "damping_mode", "backend", "model_mode"):
        assert typing.get_args(config_hints[key]) == typing.get_args(engine_hints[key]), key
    assert set(typing.get_args(config_hints["dtype"])) == set(DTYPES)


def test_the_default_defence_is_the_engines() -> None:
    assert DefenseConfig().build() == ScoreOptions().defense == GaussianNoise()
    assert DefenseConfig().params == {"sigma": GaussianNoise().sigma}


@pytest.mark.parametrize("kind", list(DEFENSES))
def test_defence_parameters_are_the_dataclass_fields(kind: str) -> None:
    cls = DEFENSES[kind]
    assert cls.kind == kind
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    assert list(parameters(cls)) == names
    assert all(tp is float for tp in parameters(cls).values())


def test_data_config_is_the_data_spec() -> None:
    assert issubclass(DataConfig, DataSpec)
    assert [f.name for f in dataclasses.fields(DataConfig)] == [
        f.name for f in dataclasses.fields(DataSpec)
    ]
    assert dataclasses.asdict(DataConfig()) == dataclasses.asdict(DataSpec())
    assert DataSpec().split is None  # "train" for the torchvision kinds, when loaded


@pytest.mark.parametrize("size", [1, 1000, 2**10, 3 * 2**20, 2 * 1024**3, 5 * 2**40, 2**50])
def test_format_bytes_round_trips(size: int) -> None:
    assert parse_bytes(format_bytes(size)) == size
    assert format_bytes(2 * 1024**3) == "2GiB"
