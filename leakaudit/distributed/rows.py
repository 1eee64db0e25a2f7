"""A rank's scored rows (:class:`~leakaudit.scores.options.ScoreResult`) as a
:class:`~leakaudit.distributed.exchange.Payload` and back, bit for bit."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from leakaudit.distributed.exchange import Payload, PayloadError
from leakaudit.scores.options import ScoreResult

_SCALARS = ("backend", "device", "seconds", "products", "product_seconds")


def rows_payload(
    result: ScoreResult | None, extra: dict[str, Tensor], meta: dict[str, Any]
) -> Payload:
    """``result`` (None: the rank has no rows), ``extra`` tensors aligned with it (such
    as sample digests) and JSON-able ``meta`` (such as the rank's statistics)."""
    if result is None:
        return Payload({"meta": meta, "result": None}, dict(extra))
    tensors = {"indices": result.indices, "labels": result.labels, **extra}
    tensors |= {f"score/{k}": v for k, v in result.scores.items()}
    tensors |= {f"diagnostic/{k}": v for k, v in result.diagnostics.items()}
    head = {k: getattr(result, k) for k in _SCALARS}
    head |= {"scores": list(result.scores), "diagnostics": list(result.diagnostics)}
    return Payload({"meta": meta, "result": head}, tensors)


def payload_rows(payload: Payload) -> tuple[ScoreResult | None, dict[str, Tensor], Any]:
    """The rows, the other tensors and the meta of a :func:`rows_payload`.

    Raises:
        PayloadError: the payload does not hold rows.
    """
    t = dict(payload.tensors)
    try:
        head, meta = payload.meta["result"], payload.meta["meta"]
        if head is None:
            return None, t, meta
        result = ScoreResult(
            indices=t.pop("indices"),
            labels=t.pop("labels"),
            scores={k: t.pop(f"score/{k}") for k in head["scores"]},
            diagnostics={k: t.pop(f"diagnostic/{k}") for k in head["diagnostics"]},
            **{k: head[k] for k in _SCALARS},
        )
    except (KeyError, TypeError) as exc:
        raise PayloadError(f"a rank sent rows without {exc}") from None
    return result, t, meta


__all__ = ["payload_rows", "rows_payload"]
