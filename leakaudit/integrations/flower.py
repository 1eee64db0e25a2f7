"""A Flower (``flwr`` ≥ 1.21, Message API) client mod that checks each training round's
privacy before the reply leaves the client.

    from flwr.clientapp import ClientApp
    from leakaudit.integrations.flower import LeakAuditMod
    from leakaudit.integrations.privacy import RoundPolicy

    mod = LeakAuditMod(make_model, local_data, RoundPolicy(target_error=1.0, apply_noise=True))
    app = ClientApp(mods=[mod])

On a ``train`` message the mod loads the received global arrays into ``model_fn()``,
scores the client's samples (``data_fn(context)``) with :func:`~.privacy.assess`, calls
the rest of the app, then (a) adds the round's summary to the reply's metric record —
numbers only, every key prefixed ``leakaudit.``; (b) with ``apply_noise``, adds Gaussian
noise of the recorded standard deviation to every floating array of the reply; (c) when
the policy's gate fails, replaces the reply with an :class:`flwr.app.Error` (code
:data:`REFUSED`). The summary is also kept in ``context.state["leakaudit"]``.
Other message types pass through untouched. See docs/federated.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from leakaudit.integrations.privacy import RoundPolicy, RoundSummary, assess

#: The error code of a reply the gate refused (Flower's own codes are small integers).
REFUSED = 4100

#: The reply's metric record the summary joins (Flower strategies aggregate ``metrics``).
METRICS_RECORD = "metrics"


def _flwr() -> Any:
    try:
        import flwr.app as app
    except ImportError as exc:  # the optional extra is missing
        raise ImportError(
            "the Flower mod needs flwr>=1.21: pip install 'leakaudit[flower]'"
        ) from exc
    return app


class LeakAuditMod:
    """Flower client mod: ``mod(message, context, call_next) -> Message``.

    Args:
        model_fn: a fresh model of the federation's architecture (its weights are replaced
            by the received global arrays).
        data_fn: ``data_fn(context)``, the client's training samples: ``(X, Y)`` tensors
            or a map-style Dataset of ``(x, y)``. They never leave the client.
        policy: what to check and do each round.
        rng: the noise generator (default: seeded from the OS; seeded noise would be
            predictable, so seed it only in tests).
    """

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        data_fn: Callable[[Any], Any],
        policy: RoundPolicy | None = None,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.app = _flwr()
        self.model_fn, self.data_fn = model_fn, data_fn
        self.policy = policy or RoundPolicy()
        self.rng = rng or np.random.default_rng()

    def __call__(self, msg: Any, ctxt: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        if msg.metadata.message_type != self.app.MessageType.TRAIN:
            return call_next(msg, ctxt)
        summary = assess(self._global_model(msg), self.data_fn(ctxt), self.policy)
        metrics = summary.metrics()
        ctxt.state["leakaudit"] = self.app.MetricRecord(metrics)
        if not summary.passed:
            reason = (
                f"leakaudit: {summary.frac_exposed_after:.3f} of {summary.n} samples stay "
                f"below the target error {self.policy.target_error:g} (allowed: "
                f"{self.policy.max_exposed:g}); the update was not sent"
            )
            return self.app.Message(self.app.Error(REFUSED, reason), reply_to=msg)
        reply = call_next(msg, ctxt)
        if reply.has_error():
            return reply
        if summary.update_noise_std > 0:
            self._add_noise(reply, summary)
        self._add_metrics(reply, metrics)
        return reply

    def _global_model(self, msg: Any) -> nn.Module:
        records = msg.content.array_records
        if len(records) != 1:
            raise ValueError(f"expected one ArrayRecord of global weights, got {len(records)}")
        model = self.model_fn()
        model.load_state_dict(next(iter(records.values())).to_torch_state_dict())
        return model

    def _add_noise(self, reply: Any, summary: RoundSummary) -> None:
        """Gaussian noise of standard deviation ``update_noise_std`` on every float array."""
        std = summary.update_noise_std
        for key, record in list(reply.content.array_records.items()):
            noisy = {}
            for name, array in record.items():
                a = array.numpy()
                if np.issubdtype(a.dtype, np.floating):
                    a = (a + self.rng.normal(0.0, std, size=a.shape)).astype(a.dtype)
                noisy[name] = self.app.Array(a.copy(order="C"))  # (ascontiguousarray makes 0-d 1-d)
            reply.content[key] = self.app.ArrayRecord(noisy)

    def _add_metrics(self, reply: Any, metrics: dict[str, float]) -> None:
        record = reply.content.metric_records.get(METRICS_RECORD)
        if record is None:
            reply.content[METRICS_RECORD] = self.app.MetricRecord(metrics)
        else:
            record.update(metrics)
