"""``leakaudit calibrate`` end to end on a TRAINED model whose attack really recovers samples.

The model is the trained-model study's MLP (docs/reproduction.md, "Trained models";
benchmarks/trained_study_setup.py), trained on the train split of scikit-learn's digits,
shipped as safetensors with a ``file.py:build`` factory (tests/trained_mlp.py). The
samples are test-split digits it never saw. Inverting Gradients at the ``fast`` budget
recovers part of them, not all, so there is a real ranking to learn and to check on
samples the calibration never attacked.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from scipy import stats
from typer.testing import CliRunner

from benchmarks.trained_study_setup import Setting, accuracy, split, train
from leakaudit import api
from leakaudit.calibration.crossval import bootstrap_ci
from leakaudit.cli import app
from leakaudit.report.schema import load_schema
from tests.trained_mlp import FACTORY

#: Test-split digits in the scanned pool; the calibration attacks 16 of them.
POOL = 64
#: Held-out samples (not in the calibration subset) attacked to check the predictions.
HELD_OUT = 12
ATTACK = ["--attacks", "ig", "--budget", "fast", "--seed", "0", "--device", "cpu"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_bootstrap_ci_ignores_resamples_where_rho_is_undefined():
    """A calibration target with few recovered samples (the rest tied at one floor) has
    resamples that draw only the floor: ρ is undefined there. The interval is the
    percentiles of the defined resamples, as a slow loop over scipy.stats.spearmanr finds
    (it used to be None whenever any resample was undefined)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=16)
    y = np.full(16, 5.0)
    top = np.argsort(x)[-3:]
    y[top] = [20.0, 30.0, 40.0]  # 3 recovered, ranked with x; 13 failures on the floor
    ci = bootstrap_ci(x, y, seed=0, n_resamples=999)
    assert ci is not None
    slow = []
    loop = np.random.default_rng(1)
    for _ in range(4000):
        i = loop.integers(0, 16, 16)
        if np.ptp(y[i]) > 0 and np.ptp(x[i]) > 0:
            slow.append(stats.spearmanr(x[i], y[i]).statistic)
    assert len(slow) < 4000  # the case really has undefined resamples
    lo, hi = np.percentile(slow, [2.5, 97.5])
    assert ci[0] == pytest.approx(lo, abs=0.06) and ci[1] == pytest.approx(hi, abs=0.06)
