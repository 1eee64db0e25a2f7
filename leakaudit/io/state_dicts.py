"""Pure helpers that turn what a checkpoint file holds into a state_dict a model accepts.

FL frameworks and Lightning nest the weights (``{"state_dict": …, "epoch": …}``) and
wrappers prefix the keys (``module.`` for DataParallel/DDP, ``_orig_mod.`` for
``torch.compile``, ``model.`` for Lightning modules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from leakaudit.errors import InputError
from leakaudit.models.choices import shorten

#: Keys under which checkpoints nest the weights, most preferred first (EMA weights last).
NESTED_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "params",
    "state_dict_ema",
    "model_ema",
    "ema_state_dict",
    "ema",
)

#: Wrapper prefixes that may be stripped from every key.
PREFIXES = ("module.", "_orig_mod.", "model.")


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def find_state_dict(obj: object, source: str) -> tuple[Any, str | None]:
    """Find the weights inside a loaded checkpoint object.

    Args:
        obj: What ``torch.load`` returned.
        source: The file name, for messages.

    Returns:
        ``(found, nested_key)``: ``found`` is a ``{name: Tensor}`` mapping or an
        ``nn.Module`` (only possible from a trusted pickle); ``nested_key`` is the
        dotted path to it (``"state_dict"``, ``"checkpoint.model"``) or None at top level.

    Raises:
        InputError: when no mapping of tensors is found.
    """
    if isinstance(obj, nn.Module) or _is_state_dict(obj):
        return obj, None
    if isinstance(obj, Mapping):
        candidates = [k for k in NESTED_KEYS if k in obj]
        candidates += [k for k in obj if k not in candidates and isinstance(k, str)]
        for key in candidates:
            value = obj[key]
            if isinstance(value, nn.Module) or _is_state_dict(value):
                return value, key
        for key in candidates:  # one more level, e.g. {"checkpoint": {"model": {...}}}
            value = obj[key]
            if isinstance(value, Mapping):
                for inner in [k for k in NESTED_KEYS if k in value]:
                    if isinstance(value[inner], nn.Module) or _is_state_dict(value[inner]):
                        return value[inner], f"{key}.{inner}"
        tensors = sum(isinstance(v, Tensor) for v in obj.values())
        if tensors:
            others = sorted(
                f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, Tensor)
            )
            raise InputError(
                f"checkpoint {source!r} mixes tensors with non-tensor entries: {shorten(others)}"
            )
        keys = shorten(sorted(map(str, obj)))
        raise InputError(
            f"checkpoint {source!r} holds no state_dict: a dict with keys {keys} and no "
            f"mapping of tensors under any of them (looked for {', '.join(NESTED_KEYS[:5])}, …)"
        )
    raise InputError(
        f"checkpoint {source!r} holds a {type(obj).__name__}, not a state_dict "
        "(a dict of tensors) or a model"
    )


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def match_prefixes(
    state: Mapping[str, Tensor], model_keys: set[str]
) -> tuple[dict[str, Tensor], str | None]:
    """Strip wrapper prefixes from the keys where that makes them match ``model_keys``.

    Prefixes carried by every key are stripped while that does not lower the overlap with
    the model's keys. A prefix carried by only some keys (a Lightning module holding
    the net as ``model.`` next to other state) is stripped, dropping the other keys, only
    when the result matches the model's keys exactly.

    Returns:
        ``(state_dict, stripped)``: ``stripped`` is the removed prefix (``"module.model."``)
        or None when the keys were used as they are.
    """
    current, stripped = dict(state), ""
    if set(current) == model_keys:
        return current, None
    changed = True
    while changed and set(current) != model_keys:
        changed = False
        for prefix in PREFIXES:
            if current and all(k.startswith(prefix) for k in current):
                candidate = _strip(current, prefix)
                if len(set(candidate) & model_keys) >= len(set(current) & model_keys):
                    current, stripped, changed = candidate, stripped + prefix, True
                    break
    if set(current) != model_keys:
        for prefix in PREFIXES:
            candidate = _strip(current, prefix)
            if set(candidate) == model_keys:
                current, stripped = candidate, stripped + prefix
                break
    return current, stripped or None


def mismatch_message(state: Mapping[str, Tensor], model: nn.Module, strict: bool) -> str | None:
    """One line listing missing and unexpected keys and shape mismatches, or None if it fits.

    With ``strict=False`` only shape mismatches count.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (checkpoint {list(state[k].shape)} vs model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    if strict and missing:
        parts.append(f"missing keys ({len(missing)}): {shorten(missing)}")
    if strict and unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {shorten(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {shorten(shapes)}")
    return "; ".join(parts) or None


def load_into(
    model: nn.Module, state: Mapping[str, Tensor], source: str, strict: bool
) -> tuple[nn.Module, str | None]:
    """Load ``state`` into ``model`` after prefix matching; return the model and the prefix.

    Raises:
        InputError: architecture and checkpoint do not match (keys and shapes listed).
    """
    matched, stripped = match_prefixes(state, set(model.state_dict()))
    problem = mismatch_message(matched, model, strict)
    if problem:
        raise InputError(
            f"checkpoint {source!r} does not match the model {type(model).__name__}: {problem}"
        )
    with torch.no_grad():
        model.load_state_dict(matched, strict=strict)
    return model, stripped


def infer_num_classes(state: Mapping[str, Tensor], build: Callable[[int], nn.Module]) -> int | None:
    """The number of classes K a state_dict was trained with, read off its weights.

    The architecture is built for K = 2 and K = 3 on the meta device (nothing allocated);
    the weights whose shapes change between the two are the classifier's, and the
    checkpoint's size along that dimension is its K.

    Args:
        state: The checkpoint's weights (wrapper prefixes are matched as for loading).
        build: ``build(K)`` returns the architecture with K outputs.

    Returns:
        K, or None when the architecture cannot be built on the meta device or the
        checkpoint does not say (no classifier key, or classifier sizes that disagree).
    """
    try:
        with torch.device("meta"):
            two, three = (build(k).state_dict() for k in (2, 3))
    except Exception:  # a best-effort probe: the real build reports what is wrong
        return None
    matched, _ = match_prefixes(state, set(two))
    found = set()
    for key, small in two.items():
        large, saved = three.get(key), matched.get(key)
        if large is None or saved is None or saved.ndim != small.ndim:
            continue
        for dim, sizes in enumerate(zip(small.shape, large.shape, strict=True)):
            if sizes == (2, 3):
                found.add(int(saved.shape[dim]))
    return found.pop() if len(found) == 1 else None
