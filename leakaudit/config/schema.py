"""The leakaudit configuration schema: one dataclass per YAML section.

Each section checks its own values in ``__post_init__`` (errors name the field);
:mod:`leakaudit.config.validator` checks the types and keys and prefixes the dotted path.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from leakaudit.calibration.apply import PSNR_RULE
from leakaudit.config.limits import check_model_size
from leakaudit.config.units import format_bytes, parse_bytes
from leakaudit.config.validator import FieldError, require, unknown
from leakaudit.defenses import DEFENSES, Defense, DefenseError, make_defense, parameter_defaults
from leakaudit.direction import Direction
from leakaudit.io.spec import DataSpec
from leakaudit.scores.batching import Batching
from leakaudit.scores.names import ALL_SCORES, SCORES
from leakaudit.scores.options import (
    DTYPES,
    Backend,
    DampingMode,
    DtypeName,
    GmEnd,
    ModelMode,
    OptionError,
    ScoreOptions,
)
from leakaudit.scores.risk import DEFAULT_RISK_SCORE, Risk, resolve_risk

_Convert = Callable[[Any], Any]

#: The ``scores`` keys spelled or typed unlike their :class:`ScoreOptions` field:
#: config key → (option, option value → config value, config value → option value).
#: Every other ``scores`` key that names an option is that option, value for value.
_OPTION_KEYS: dict[str, tuple[str, _Convert, _Convert]] = {
    "select": ("scores", list, lambda v: ALL_SCORES if isinstance(v, str) else tuple(v)),
    "dtype": ("dtype", {v: k for k, v in DTYPES.items()}.__getitem__, DTYPES.__getitem__),
    "memory_budget": ("memory_budget", format_bytes, parse_bytes),
}

#: The engine's options, name → dataclass field: the one place their defaults live.
_OPTIONS = {f.name: f for f in dataclasses.fields(ScoreOptions)}


#: How to fix a list of scores that lacks one the scan reads.
_ADD_IT = (
    "add {0} to --scores / scores.select, or drop the list (auto computes what the scan reads)"
)


def _same(value: Any) -> Any:
    return value


def _option_key(key: str) -> tuple[str, _Convert, _Convert]:
    """The option a ``scores`` key sets, and the conversions both ways."""
    return _OPTION_KEYS.get(key, (key, _same, _same))


def _option_default(name: str) -> Any:
    """The default of :class:`ScoreOptions` field ``name``."""
    option = _OPTIONS[name]
    if option.default_factory is not dataclasses.MISSING:
        return option.default_factory()
    return option.default


def _engine_default(key: str) -> Any:
    """The default of ``scores`` key ``key``: the engine's, in the config's form."""
    name, to_config, _ = _option_key(key)
    return to_config(_option_default(name))


@contextmanager
def _section(name: str) -> Iterator[None]:
    """Prefix a :class:`FieldError` raised inside with the config section ``name``."""
    try:
        yield
    except FieldError as exc:
        raise FieldError(f"{name}.{exc.key}", exc.detail) from None


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
class DataConfig(DataSpec):
    """Where the client's samples come from: the fields and defaults of
    :class:`~leakaudit.io.spec.DataSpec` (it is the spec ``load_dataset`` reads), checked."""

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
    """What to compute and how: the options of :class:`~leakaudit.scores.options.ScoreOptions`
    as YAML spells them (defaults are the engine's, read from its fields), plus the risk
    score and direction overrides of the report, and the ``calibration.json`` (written by
    ``leakaudit calibrate``) that turns scores into a predicted PSNR and ranks by it."""

    select: Literal["auto", "all"] | list[str] = "auto"
    risk_score: str = DEFAULT_RISK_SCORE
    directions: dict[str, Direction] = field(default_factory=dict)
    calibration: str | None = None
    gm_end: GmEnd = field(default=_engine_default("gm_end"))
    n_probes: int = field(default=_engine_default("n_probes"))
    max_iter: int = field(default=_engine_default("max_iter"))
    tol: float = field(default=_engine_default("tol"))
    dense_max_dim: int = field(default=_engine_default("dense_max_dim"))
    damping: float = field(default=_engine_default("damping"))
    damping_mode: DampingMode = field(default=_engine_default("damping_mode"))
    seed: int = field(default=_engine_default("seed"))
    device: Literal["auto", "cpu", "cuda"] = field(default=_engine_default("device"))
    dtype: DtypeName = field(default=_engine_default("dtype"))
    chunk_size: int | None = field(default=_engine_default("chunk_size"))
    memory_budget: int | str = field(default=_engine_default("memory_budget"))
    backend: Backend = field(default=_engine_default("backend"))
    model_mode: ModelMode = field(default=_engine_default("model_mode"))
    local_steps: int = field(default=_engine_default("local_steps"))
    local_lr: float = field(default=_engine_default("local_lr"))
    batch_size: int | None = None
    batch_shuffle: bool = True
    drop_last: bool = False

    def __post_init__(self) -> None:
        require(
            self.batch_size is None or self.batch_size >= 1,
            "batch_size",
            f"must be >= 1, got {self.batch_size}",
        )
        for i, name in enumerate(self.listed() or ()):
            require(name in SCORES, f"select[{i}]", unknown("score", name, ALL_SCORES))
        require(self.select != [], "select", "select at least one score (or auto, or all)")
        require(
            self.risk_score in SCORES, "risk_score", unknown("score", self.risk_score, ALL_SCORES)
        )
        require(
            self.computes(self.risk_score),
            "risk_score",
            f"the risk score {self.risk_score!r} is not among the selected scores "
            f"({', '.join(self.listed() or ())}): {_ADD_IT.format(self.risk_score)}",
        )
        for name in self.directions:
            require(name in SCORES, f"directions.{name}", unknown("score", name, ALL_SCORES))
        self.options()  # the engine checks every value it takes
        self._check_local_steps()

    def _check_local_steps(self) -> None:
        """Multi-step updates need torch.func, and a calibration maps one gradient's scores
        (one sample's: not a batch's)."""
        require(
            self.batch_size is None or self.calibration is None,
            "batch_size",
            "a calibration maps the scores of one sample's gradient (calibrate attacks single "
            "samples): drop scores.calibration / --calibration, or scan without --batch-size",
        )
        if self.local_steps == 1:
            return
        require(
            self.backend != "autograd",
            "local_steps",
            f"{self.local_steps} local steps need the torch.func backend "
            "(backend: auto or func, not autograd)",
        )
        require(
            self.calibration is None,
            "local_steps",
            "a calibration maps the scores of one gradient (calibrate attacks gradients): "
            "drop scores.calibration / --calibration, or score with local_steps: 1",
        )

    def options(self, defense: Defense | None = None) -> ScoreOptions:
        """The engine's options for this section (with ``defense``, else the engine's default).

        Raises:
            FieldError: a value the engine refuses, named by its key in this section.
        """
        kwargs: dict[str, Any] = {} if defense is None else {"defense": defense}
        for key in (f.name for f in dataclasses.fields(self)):
            name, _, to_engine = _option_key(key)
            if name in _OPTIONS:
                try:
                    kwargs[name] = to_engine(getattr(self, key))
                except ValueError as exc:
                    raise FieldError(key, str(exc)) from None
        try:
            return ScoreOptions(**kwargs)
        except OptionError as exc:
            keys = {name: key for key, (name, _, _) in _OPTION_KEYS.items()}
            raise FieldError(keys.get(exc.field, exc.field), exc.detail) from None

    def listed(self) -> list[str] | None:
        """The scores ``select`` lists; ``None`` for ``auto`` and ``all``."""
        return None if isinstance(self.select, str) else self.select

    def computes(self, name: str) -> bool:
        """Whether a scan of this section computes score ``name`` whatever else needs it:
        ``auto`` adds every score the scan reads, ``all`` has them all, a list only its own."""
        listed = self.listed()
        return listed is None or name in listed
    def batching(self) -> Batching | None:
        """The client's batching when ``batch_size`` is set (batch-level scores), else None.
        Its loader's generator is seeded by ``seed``."""
        if self.batch_size is None:
            return None
        return Batching(self.batch_size, self.batch_shuffle, self.seed, self.drop_last)

    def risk(self) -> Risk:
        """The risk score and every score's direction (the override, else the shipped one)."""
        return resolve_risk(self.risk_score, self.directions, self.listed())


@dataclass
class DefenseConfig:
    """The client's gradient defence, and the reconstruction error τ of the σ what-if.

    The default kind is the engine's default defence; ``params`` are filled with the
    defence's own defaults (``gaussian``: ``sigma: 0.01``) and checked by building it.
    """

    kind: str = _option_default("defense").kind
    params: dict[str, float] = field(default_factory=dict)
    target_error: float = 1.0

    def __post_init__(self) -> None:
        require(self.kind in DEFENSES, "kind", DEFENSES.unknown(self.kind))
        self.params = {**parameter_defaults(DEFENSES[self.kind]), **self.params}
        self.build()
        require(self.target_error > 0, "target_error", "must be > 0")

    def build(self) -> Defense:
        """The defence this section describes.

        Raises:
            FieldError: an unknown kind, or a parameter that is unknown, missing or refused
                by the defence's own checks (``params.sigma: must be >= 0, got -1.0``).
        """
        try:
            return make_defense(self.kind, **self.params)
        except DefenseError as exc:
            raise FieldError(exc.key, exc.detail) from None


@dataclass
class GateRule:
    """Fail when more than ``max_fraction`` of the samples are beyond the threshold.

    The threshold is ``threshold`` (a score value), or ``percentile``: that percentile
    (0–100) of the score's values in the baseline report (``gate.baseline``), else in this
    scan. ``reference: baseline`` refuses a percentile rule without a baseline.
    ``risky_when`` is ``below`` or ``above``; by default the score's risk direction
    (``i2f`` with ``threshold: τ`` flags samples whose predicted error is below τ).
    """

    score: str
    threshold: float | None = None
    max_fraction: float = 0.0
    risky_when: Literal["below", "above"] | None = None
    percentile: float | None = None
    reference: Literal["auto", "baseline"] = "auto"

    def __post_init__(self) -> None:
        require(
            self.score in SCORES or self.score == PSNR_RULE,
            "score",
            unknown("score", self.score, [*ALL_SCORES, PSNR_RULE]),
        )
        require(
            self.threshold is not None or self.percentile is not None,
            "threshold",
            "required key (a score value), unless the rule gives percentile (0-100: that "
            "percentile of the baseline's values)",
        )
        require(
            self.threshold is None or self.percentile is None,
            "threshold",
            "give threshold or percentile, not both",
        )
        require(
            self.threshold is None or math.isfinite(self.threshold),
            "threshold",
            f"must be a finite number, got {self.threshold}",
        )
        require(
            self.percentile is None or 0.0 <= self.percentile <= 100.0,
            "percentile",
            f"must be in [0, 100], got {self.percentile}",
        )
        require(
            self.reference == "auto" or self.percentile is not None,
            "reference",
            "only a percentile rule has a reference",
        )
        require(
            0.0 <= self.max_fraction <= 1.0,
            "max_fraction",
            f"must be in [0, 1], got {self.max_fraction}",
        )


#: ``expires`` dates of allowlist entries: ``YYYY-MM-DD``.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class AllowEntry:
    """A sample the gate ignores, and why: by ``id`` (its path id) and/or ``sha256`` (its
    content hash, the report's ``content_sha256``: survives renames), until ``expires``
    (``YYYY-MM-DD``, inclusive; an expired entry no longer suppresses)."""

    id: str | None = None
    reason: str = ""
    sha256: str | None = None
    expires: str | None = None

    def __post_init__(self) -> None:
        require(
            self.id is not None or self.sha256 is not None,
            "id",
            "give the sample's id or its sha256 (content hash)",
        )
        require(bool(self.reason.strip()), "reason", "required key: give a reason for allowlisting")
        if self.sha256 is not None:
            self.sha256 = self.sha256.lower()
            require(
                re.fullmatch(r"[0-9a-f]{64}", self.sha256) is not None,
                "sha256",
                f"expected 64 hex digits (a sample's content_sha256), got {self.sha256!r}",
            )
        if self.expires is not None:
            require(
                _DATE.fullmatch(self.expires) is not None and _valid_date(self.expires),
                "expires",
                f"expected a date YYYY-MM-DD, got {self.expires!r}",
            )

    def expired(self, today: datetime.date) -> bool:
        """Whether the entry's ``expires`` date is before ``today``."""
        return self.expires is not None and datetime.date.fromisoformat(self.expires) < today

    def names(self) -> str:
        """How the entry names its sample: ``id``, ``sha256:…``, or both."""
        parts = [self.id] if self.id is not None else []
        parts += [f"sha256:{self.sha256}"] if self.sha256 is not None else []
        return " / ".join(parts)


def _valid_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass
class GateConfig:
    """CI gate: rules (all must pass), allowlisted samples, and the ``baseline`` report
    (a previous scan's JSON) that percentile rules and the new/known comparison read."""

    rules: list[GateRule] = field(default_factory=list)
    allowlist: list[AllowEntry] = field(default_factory=list)
    baseline: str | None = None


@dataclass
class OutputConfig:
    """What the scan writes: ``format`` to stdout (or ``output``), JSON to ``json``;
    ``redact`` hashes sample ids and strips directories (``leakaudit.report.redact``)."""

    top_k: int = 10
    json: str | None = None
    format: Literal["table", "md", "json", "sarif", "junit", "html"] = "table"
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
                rule.reference != "baseline" or self.gate.baseline is not None,
                f"gate.rules[{i}].reference",
                "a percentile rule of the baseline needs gate.baseline "
                "(--baseline previous-report.json)",
            )
            if rule.score == PSNR_RULE:
                require(
                    self.scores.calibration is not None,
                    f"gate.rules[{i}].score",
                    f"a rule on {PSNR_RULE!r} (predicted PSNR) needs scores.calibration "
                    "(--calibration calibration.json from `leakaudit calibrate`)",
                )
                continue
            require(
                self.scores.computes(rule.score),
                f"gate.rules[{i}].score",
                f"the rule's score {rule.score!r} is not among the selected scores "
                f"({', '.join(self.scores.listed() or ())}): {_ADD_IT.format(rule.score)}",
            )

    def score_options(self) -> ScoreOptions:
        """The engine's options for this config: the ``scores`` and ``defense`` sections.

        This is the one bridge from the config to :class:`ScoreOptions`.

        Raises:
            FieldError: a value refused, named by its dotted key (``defense.params.sigma``).
        """
        with _section("defense"):
            defense = self.defense.build()
        with _section("scores"):
            return self.scores.options(defense)
