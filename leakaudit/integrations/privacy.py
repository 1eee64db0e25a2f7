"""A client's privacy check for one federated round, framework-free: score the client's
samples against the global model, derive the Gaussian σ that the I²F what-if says keeps
every sample's predicted reconstruction error at or above τ, and summarise it in numbers
only (no sample ids, no images).

Units: I²F (Zhang et al. 2023) predicts the error of inverting the *gradient* g plus
noise N(0, σ²I). A client that sends an update Δθ = −η·g (one SGD step of learning rate
η on the batch's mean loss) protects it equally with noise of standard deviation η·σ on
Δθ; :attr:`RoundPolicy.lr` is that η. For E local steps on the same samples (or batch),
score the update itself: ``options`` with ``local_steps=E`` and ``local_lr=η`` (= ``lr``)
scores u = Σₖ ∇ℓ(θₖ) = −Δθ/η, so noise σ on u is again η·σ on Δθ, exactly. Steps over
different batches (an epoch) are still scored as one gradient: an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from leakaudit.defenses import GaussianNoise
from leakaudit.scores.batches import score_batches
from leakaudit.scores.batching import Batching
from leakaudit.scores.engine import score_samples
from leakaudit.scores.i2f import sigma_needed
from leakaudit.scores.names import GRAD_NORM, I2F
from leakaudit.scores.options import ScoreOptions, ScoreResult

#: Every metric a summary reports, in this order (all prefixed ``leakaudit.``).
METRICS = (
    "n",
    "min_i2f",
    "median_i2f",
    "max_grad_norm",
    "frac_exposed",
    "sigma_needed",
    "sigma_applied",
    "update_noise_std",
    "frac_exposed_after",
    "passed",
)


@dataclass(frozen=True)
class RoundPolicy:
    """What the client checks and does each round.

    Attributes:
        target_error: τ, the reconstruction error (input units) every sample should keep.
        sigma: the Gaussian noise (gradient units) the client already applies elsewhere
            (0: none); the exposure before any noise of this check is judged under it.
        apply_noise: add noise of σ = max(sigma, σ_needed) (gradient units, ×lr on the
            update) to the reply's arrays.
        max_exposed: refuse to send when more than this fraction of the scored samples
            stays below τ after the noise (None: never refuse).
        lr: η, the learning rate that turns gradient noise into update noise.
        max_samples: score at most the first this many samples (None: all).
        batch_size: score batches of this size, as the client trains (None: per sample).
        options: the engine's options; cheap ones by default (I²F with 4 probes and 20
            Lanczos steps). Its ``defense`` is replaced by Gaussian noise of ``sigma``.
    """

    target_error: float = 1.0
    sigma: float = 0.0
    apply_noise: bool = False
    max_exposed: float | None = None
    lr: float = 1.0
    max_samples: int | None = 64
    batch_size: int | None = None
    options: ScoreOptions = field(
        default_factory=lambda: ScoreOptions(scores=(GRAD_NORM, I2F), n_probes=4, max_iter=20)
    )

    def __post_init__(self) -> None:
        if self.target_error <= 0:
            raise ValueError(f"target_error must be > 0, got {self.target_error}")
        if self.sigma < 0 or self.lr <= 0:
            raise ValueError(f"sigma must be >= 0 and lr > 0, got {self.sigma}, {self.lr}")
        if self.max_exposed is not None and not 0 <= self.max_exposed <= 1:
            raise ValueError(f"max_exposed must be in [0, 1], got {self.max_exposed}")
        if I2F not in self.options.scores:
            raise ValueError("the options must compute 'i2f' (the σ what-if needs it)")
        steps, local_lr = self.options.local_steps, self.options.local_lr
        if steps > 1 and local_lr != self.lr:
            raise ValueError(
                f"options.local_steps={steps} scores the update of steps of "
                f"options.local_lr={local_lr:g}, but lr={self.lr:g} converts its noise: "
                "set both to the client's learning rate"
            )


@dataclass(frozen=True)
class RoundSummary:
    """The numbers a round's check produces (see :data:`METRICS`)."""

    n: int
    min_i2f: float
    median_i2f: float
    max_grad_norm: float
    frac_exposed: float
    sigma_needed: float
    sigma_applied: float
    update_noise_std: float
    frac_exposed_after: float
    passed: bool

    def metrics(self, prefix: str = "leakaudit.") -> dict[str, float]:
        """Name → number (``passed`` as 1.0/0.0): what may leave the client."""
        return {prefix + k: float(getattr(self, k)) for k in METRICS}


def assess(model: nn.Module, data: Any, policy: RoundPolicy) -> RoundSummary:
    """Score ``data`` (``(X, Y)`` tensors or a map-style Dataset) against ``model``.

    Returns:
        The round's summary; ``sigma_needed`` is the largest per-sample σ = τ / I²F(σ=1)
        (the noise that lifts every sample's predicted error to τ), NaN when no sample
        has a finite one.
    """
    result = _score(model, _subset(data, policy.max_samples), policy)
    i2f = result.scores[I2F].double().numpy()
    unit = result.diagnostics["i2f_unit_sigma"].double().numpy()
    needed = sigma_needed(unit, policy.target_error)
    finite = needed[np.isfinite(needed)]
    sigma_star = float(finite.max()) if finite.size else float("nan")
    applied = policy.sigma
    if policy.apply_noise and np.isfinite(sigma_star):
        applied = max(policy.sigma, sigma_star)
    # σ_i = τ / I²F_i(σ=1) is the noise sample i needs; comparing σ (not applied·I²F with
    # τ, which rounds either way) keeps the sample that set σ* safe under σ*.
    after = float(np.mean(~(needed <= applied)))
    passed = policy.max_exposed is None or after <= policy.max_exposed
    return RoundSummary(
        n=len(i2f),
        min_i2f=float(np.min(i2f)),
        median_i2f=float(np.median(i2f)),
        max_grad_norm=float(result.scores[GRAD_NORM].max()) if GRAD_NORM in result.scores else 0.0,
        frac_exposed=float(np.mean(~(i2f >= policy.target_error))),
        sigma_needed=sigma_star,
        sigma_applied=applied if policy.apply_noise else 0.0,
        update_noise_std=policy.lr * applied if policy.apply_noise else 0.0,
        frac_exposed_after=after,
        passed=passed,
    )


def _subset(data: Any, limit: int | None) -> Dataset[Any]:
    if isinstance(data, tuple):
        data = TensorDataset(torch.as_tensor(data[0]), torch.as_tensor(data[1]))
    if limit is None or len(data) <= limit:
        return data
    return torch.utils.data.Subset(data, range(limit))


def _score(model: nn.Module, data: Dataset[Any], policy: RoundPolicy) -> ScoreResult:
    options = replace(policy.options, defense=GaussianNoise(policy.sigma))
    if policy.batch_size is None:
        return score_samples(model, data, options)
    batching = Batching(policy.batch_size, seed=policy.options.seed)
    return score_batches(model, data, batching, options).per_sample()
