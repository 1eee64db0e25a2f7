"""The leakaudit configuration schema: one dataclass per YAML section.

Each section checks its own values in ``__post_init__`` (errors name the field);
:mod:`leakaudit.config.validator` checks the types and keys and prefixes the dotted path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from leakaudit.config.validator import FieldError, require, unknown
from leakaudit.defenses import DEFENSES
from leakaudit.io.guards import check_model_size
from leakaudit.io.imagefolder import DEFAULT_MAX_PIXELS
from leakaudit.scores.names import ALL_SCORES, GRAD_NORM, SCORES, Direction

#: The score that ranks samples unless the config says otherwise. One place only:
#: the reproduction study (issue 5) may change it.
DEFAULT_RISK_SCORE = GRAD_NORM

#: Parameters a defence gets when the config names its kind without them.
DEFAULT_DEFENSE_PARAMS: dict[str, dict[str, float]] = {"gaussian": {"sigma": 0.01}}


@dataclass
class ModelConfig:
    """Which architecture, with which weights.

    ``num_classes`` defaults to the checkpoint's classifier size, else the dataset's;
    ``in_channels`` and ``image_size`` to what the dataset has. Without a checkpoint the
    scan is refused unless ``random_init`` asks for a model initialised from the seed.
    """

    name: str = "lenet"
    num_classes: int | None = None
    in_channels: int | None = None
    image_size: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    strict: bool = True
    random_init: bool = False

    def __post_init__(self) -> None:
        for key in ("num_classes", "in_channels", "image_size"):
            value = getattr(self, key)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            require(value is None or is_int, key, f"expected int or null, got {value!r}")
            require(value is None or value >= 1, key, f"must be >= 1, got {value}")
            check_model_size(key, value)
        require(
            not (self.random_init and self.checkpoint),
            "random_init",
            "--random-init and --checkpoint exclude each other (drop one)",
        )


@dataclass
class DataConfig:
    """Where the client's samples come from (fields of ``leakaudit.io.datasets.DataSpec``)."""

    kind: str = "imagefolder"
    root: str | None = None
    split: str | None = None
    resize: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    channels: int | None = None
    indices: list[int] | None = None
    first: int | None = None
    per_class: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for key in ("resize", "channels", "first", "per_class", "max_pixels"):
            value = getattr(self, key)
            require(value is None or value >= 1, key, f"must be >= 1, got {value}")
        if self.indices is not None:
            require(all(i >= 0 for i in self.indices), "indices", "must be >= 0")
        if self.std is not None:
            require(all(s > 0 for s in self.std), "std", "must be > 0")


@dataclass
class ScoresConfig:
    """What to compute and how (see ``leakaudit.scores.options.ScoreOptions``)."""

    select: list[str] = field(default_factory=lambda: list(ALL_SCORES))
    risk_score: str = DEFAULT_RISK_SCORE
    directions: dict[str, Direction] = field(default_factory=dict)
    gm_end: Literal["max", "min"] = "max"
    n_probes: int = 8
    max_iter: int = 80
    tol: float = 1e-4
    damping: float = 1e-3
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    chunk_size: int | None = None
    memory_budget: int | str = "2GiB"
    backend: Literal["auto", "func", "autograd"] = "auto"
    model_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self) -> None:
        for i, name in enumerate(self.select):
            require(name in SCORES, f"select[{i}]", unknown("score", name, ALL_SCORES))
        require(bool(self.select), "select", "select at least one score")
        require(
            self.risk_score in SCORES, "risk_score", unknown("score", self.risk_score, ALL_SCORES)
        )
        require(
            self.risk_score in self.select,
            "risk_score",
            f"{self.risk_score!r} is not among the selected scores ({', '.join(self.select)})",
        )
        for name in self.directions:
            require(name in SCORES, f"directions.{name}", unknown("score", name, ALL_SCORES))
        for key in ("n_probes", "max_iter"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.tol > 0, "tol", f"must be > 0, got {self.tol}")
        require(self.damping > 0, "damping", f"must be > 0, got {self.damping}")
        require(
            0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be an integer in [0, 2**63 - 1], got {self.seed}",
        )
        require(
            self.chunk_size is None or self.chunk_size >= 1,
            "chunk_size",
            f"must be >= 1, got {self.chunk_size}",
        )
        try:
            parse_bytes(self.memory_budget)
        except ValueError as exc:
            raise FieldError("memory_budget", str(exc)) from None

    def direction(self, name: str) -> Direction:
        """The risk direction used for score ``name``: the override, else SPEC's."""
        return self.directions.get(name, SCORES[name].direction)


@dataclass
class DefenseConfig:
    """The client's gradient defence, and the reconstruction error τ of the σ what-if."""

    kind: str = "gaussian"
    params: dict[str, float] = field(default_factory=dict)
    target_error: float = 1.0

    def __post_init__(self) -> None:
        require(self.kind in DEFENSES, "kind", unknown("defense", self.kind, list(DEFENSES)))
        takes = DEFENSES[self.kind][1]
        self.params = {**DEFAULT_DEFENSE_PARAMS.get(self.kind, {}), **self.params}
        for name in self.params:
            require(name in takes, f"params.{name}", unknown("parameter", name, list(takes)))
        for name in takes:
            require(name in self.params, "params", f"defense {self.kind!r} needs {name!r}")
        require(self.target_error > 0, "target_error", "must be > 0")


@dataclass
class GateRule:
    """Fail when more than ``max_fraction`` of the samples are beyond ``threshold``.

    ``risky_when`` is ``below`` or ``above``; by default the score's risk direction
    (``i2f`` with ``threshold: τ`` flags samples whose predicted error is below τ).
    """

    score: str
    threshold: float
    max_fraction: float = 0.0
    risky_when: Literal["below", "above"] | None = None

    def __post_init__(self) -> None:
        require(self.score in SCORES, "score", unknown("score", self.score, ALL_SCORES))
        require(
            math.isfinite(self.threshold),
            "threshold",
            f"must be a finite number, got {self.threshold}",
        )
        require(
            0.0 <= self.max_fraction <= 1.0,
            "max_fraction",
            f"must be in [0, 1], got {self.max_fraction}",
        )


@dataclass
class AllowEntry:
    """A sample the gate ignores, and why."""

    id: str
    reason: str

    def __post_init__(self) -> None:
        require(bool(self.reason.strip()), "reason", "give a reason for allowlisting")


@dataclass
class GateConfig:
    """CI gate: rules (all must pass) and allowlisted sample ids."""

    rules: list[GateRule] = field(default_factory=list)
    allowlist: list[AllowEntry] = field(default_factory=list)


@dataclass
class OutputConfig:
    """What the scan writes: ``format`` to stdout (or ``output``), JSON to ``json``;
    ``redact`` hashes sample ids and strips directories (``leakaudit.report.redact``)."""

    top_k: int = 10
    json: str | None = None
    format: Literal["table", "md", "json"] = "table"
    output: str | None = None
    redact: bool = False

    def __post_init__(self) -> None:
        require(self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")


@dataclass
class ScanConfig:
    """Everything ``leakaudit scan`` needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        for i, rule in enumerate(self.gate.rules):
            require(
                rule.score in self.scores.select,
                f"gate.rules[{i}].score",
                f"{rule.score!r} is not among the selected scores (scores.select)",
            )


#: ``scores.seed`` seeds ``torch.Generator`` and NumPy: a non-negative 64-bit signed integer.
MAX_SEED = 2**63 - 1

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})

#: The largest ``memory_budget``: 1 PiB, more than any machine has.
MAX_MEMORY_BUDGET = 2**50


def parse_bytes(value: int | str) -> int:
    """``2147483648``, ``"2GiB"``, ``"512MB"`` → bytes in [1, 1 PiB]; ``ValueError`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        size: float = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"expected bytes like 2GiB or 512MB, got {value!r}")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]  # inf when absurdly long
    else:
        raise ValueError(f"expected bytes like 2GiB or 512MB, got {value!r}")
    if not 1 <= size <= MAX_MEMORY_BUDGET:
        raise ValueError(f"must be between 1 byte and 1PiB (2**50 bytes), got {value!r}")
    return int(size)
