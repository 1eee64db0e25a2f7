"""The validated configuration of a scan: YAML in, dataclasses out.

Every error names the bad key by its dotted path (``data.per_clas: unknown key (did you
mean per_class?)``) and raises :class:`~leakaudit.errors.ConfigError` (exit 2).
Command-line flags override values through :func:`with_overrides`, which validates
them with the same rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from leakaudit.defenses import DEFENSES
from leakaudit.errors import ConfigError
from leakaudit.scores.names import ALL_SCORES, LAVP_GM, SCORES, Direction

#: The score that ranks samples unless the config says otherwise. One place only:
#: the reproduction study (issue 5) may change it.
DEFAULT_RISK_SCORE = LAVP_GM

#: Parameters a defence gets when the config names its kind without them.
DEFAULT_DEFENSE_PARAMS: dict[str, dict[str, float]] = {"gaussian": {"sigma": 0.01}}


class FieldError(ConfigError):
    """A bad value of one field; the loader prefixes the field's dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise FieldError(key, message)


@dataclass
class ModelConfig:
    """Which architecture, with which weights.

    ``num_classes``, ``in_channels`` and ``image_size`` default to what the dataset has.
    """

    name: str = "lenet"
    num_classes: int | None = None
    in_channels: int | None = None
    image_size: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    strict: bool = True

    def __post_init__(self) -> None:
        for key in ("num_classes", "in_channels", "image_size"):
            value = getattr(self, key)
            _require(value is None or value >= 1, key, f"must be >= 1, got {value}")


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

    def __post_init__(self) -> None:
        for key in ("resize", "channels", "first", "per_class"):
            value = getattr(self, key)
            _require(value is None or value >= 1, key, f"must be >= 1, got {value}")
        if self.indices is not None:
            _require(all(i >= 0 for i in self.indices), "indices", "must be >= 0")
        if self.std is not None:
            _require(all(s > 0 for s in self.std), "std", "must be > 0")


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
            _require(name in SCORES, f"select[{i}]", _unknown("score", name, ALL_SCORES))
        _require(bool(self.select), "select", "select at least one score")
        _require(
            self.risk_score in SCORES, "risk_score", _unknown("score", self.risk_score, ALL_SCORES)
        )
        _require(
            self.risk_score in self.select,
            "risk_score",
            f"{self.risk_score!r} is not among the selected scores ({', '.join(self.select)})",
        )
        for name in self.directions:
            _require(name in SCORES, f"directions.{name}", _unknown("score", name, ALL_SCORES))
        for key in ("n_probes", "max_iter"):
            _require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        _require(self.tol > 0, "tol", f"must be > 0, got {self.tol}")
        _require(self.damping > 0, "damping", f"must be > 0, got {self.damping}")
        _require(
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
        _require(self.kind in DEFENSES, "kind", _unknown("defense", self.kind, list(DEFENSES)))
        takes = DEFENSES[self.kind][1]
        self.params = {**DEFAULT_DEFENSE_PARAMS.get(self.kind, {}), **self.params}
        for name in self.params:
            _require(name in takes, f"params.{name}", _unknown("parameter", name, list(takes)))
        for name in takes:
            _require(name in self.params, "params", f"defense {self.kind!r} needs {name!r}")
        _require(self.target_error > 0, "target_error", "must be > 0")


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
        _require(self.score in SCORES, "score", _unknown("score", self.score, ALL_SCORES))
        _require(0.0 <= self.max_fraction <= 1.0, "max_fraction", "must be in [0, 1]")


@dataclass
class AllowEntry:
    """A sample the gate ignores, and why."""

    id: str
    reason: str

    def __post_init__(self) -> None:
        _require(bool(self.reason.strip()), "reason", "give a reason for allowlisting")


@dataclass
class GateConfig:
    """CI gate: rules (all must pass) and allowlisted sample ids."""

    rules: list[GateRule] = field(default_factory=list)
    allowlist: list[AllowEntry] = field(default_factory=list)


@dataclass
class OutputConfig:
    """What the scan writes: ``format`` to stdout (or ``output``), JSON to ``json``."""

    top_k: int = 10
    json: str | None = None
    format: Literal["table", "md", "json"] = "table"
    output: str | None = None

    def __post_init__(self) -> None:
        _require(self.top_k >= 1, "top_k", f"must be >= 1, got {self.top_k}")


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
            _require(
                rule.score in self.scores.select,
                f"gate.rules[{i}].score",
                f"{rule.score!r} is not among the selected scores (scores.select)",
            )


def _unknown(what: str, name: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; choose from: {', '.join(choices)}"
    return f"unknown {what} {name!r}{hint}"


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20}
_UNITS["gib"] = 2**30


def parse_bytes(value: int | str) -> int:
    """``2147483648``, ``"2GiB"``, ``"512MB"`` → bytes; ``ValueError`` otherwise."""
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be a positive number of bytes, got {value}")
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"expected bytes like 2GiB or 512MB, got {value!r}")
    return max(1, int(float(m.group(1)) * _UNITS[m.group(2).lower()]))


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` (lightly converting int → float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:  # first match wins
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
    elif dataclasses.is_dataclass(tp):
        return _build(typing.cast(type, tp), value, key)
    elif origin is list:
        if isinstance(value, list | tuple):
            return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and key.endswith(".id"):
            return str(value)  # allowlisted sample ids may be dataset indices
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, dict) else "a mapping"


def _build(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``; errors are prefixed by ``path``."""
    where = f"{path}: " if path else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a mapping, got {_describe(raw)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key{hint}")
    missing = [
        name
        for name, f in known.items()
        if name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path + '.' if path else ''}{missing[0]}: required key is missing")
    prefix = path + "." if path else ""
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{prefix}{exc.key}: {exc.detail}") from None


def config_from_dict(raw: dict[str, Any] | None) -> ScanConfig:
    """Validate a plain mapping (as read from YAML) into a :class:`ScanConfig`."""
    cfg: ScanConfig = _build(ScanConfig, raw or {}, "")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A :class:`ScanConfig` (or any section) as plain JSON/YAML-ready data."""
    return dataclasses.asdict(cfg)


def _resolve(value: str | None, base: Path) -> str | None:
    """``value`` made relative to ``base`` when it is a relative local path."""
    if value is None or Path(value).is_absolute():
        return value
    return str(base / value)


def load_config(path: str | Path) -> ScanConfig:
    """Read and validate a YAML config. Relative paths in it (``model.checkpoint``,
    ``data.root``, a ``file.py:factory`` model) are relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    cfg = config_from_dict(raw)
    base = path.parent
    cfg.model.checkpoint = _resolve(cfg.model.checkpoint, base)
    cfg.data.root = _resolve(cfg.data.root, base)
    file_part, sep, factory = cfg.model.name.rpartition(":")
    if sep and file_part.endswith(".py"):
        cfg.model.name = f"{_resolve(file_part, base)}:{factory}"
    return cfg


def with_overrides(cfg: ScanConfig, overrides: dict[str, Any]) -> ScanConfig:
    """A copy of ``cfg`` with dotted keys (``"scores.device"``) replaced, re-validated.

    ``None`` values are ignored (a flag that was not given).
    """
    raw = config_to_dict(cfg)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config_from_dict(raw)
