"""The Flower client mod, driven directly with Flower's Message and Context objects (no
network, no simulation): the metrics it adds, the noise it adds, and its refusal."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

flwr_app = pytest.importorskip("flwr.app", reason="the flower extra is not installed")

from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)

from leakaudit.defenses import GaussianNoise  # noqa: E402
from leakaudit.integrations.flower import REFUSED, LeakAuditMod  # noqa: E402
from leakaudit.integrations.privacy import METRICS, RoundPolicy  # noqa: E402
from leakaudit.scores.engine import score_samples  # noqa: E402
from leakaudit.scores.options import ScoreOptions  # noqa: E402
from tests.ground_truth import ReLUBNNet, digits  # noqa: E402

LR = 0.1
X, Y = digits(12, 6)
X = X.float()


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return ReLUBNNet(1, 6)


def train_step(msg: Message, ctxt: Context) -> Message:
    """The client app: one SGD step on its digits from the received weights."""
    model = make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    loss = nn.functional.cross_entropy(model(X), Y)
    loss.backward()
    loss = loss.detach()
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    content = RecordDict(
        {
            "arrays": ArrayRecord.from_torch_state_dict(model.state_dict()),
            "metrics": MetricRecord({"num-examples": len(X), "train_loss": loss.item()}),
        }
    )
    return Message(content, reply_to=msg)


def train_message(kind: str = MessageType.TRAIN) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord.from_torch_state_dict(make_model().state_dict()),
            "config": ConfigRecord({"lr": LR}),
        }
    )
    # As the SuperNode delivers it: metadata set by the server side.
    meta = Metadata(run_id=1, message_id="m1", src_node_id=0, dst_node_id=1,
                    reply_to_message_id="", group_id="1", created_at=time.time(), ttl=3600.0,
                    message_type=kind)  # fmt: skip
    return Message(content=content, metadata=meta)


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def policy(**kw) -> RoundPolicy:
    options = ScoreOptions(scores=("grad_norm", "i2f"), n_probes=4, max_iter=24, seed=0)
    return RoundPolicy(target_error=1.0, lr=LR, max_samples=None, options=options, **kw)


def test_metrics_are_numbers_only_and_the_sigma_reaches_the_target() -> None:
    mod = LeakAuditMod(make_model, lambda ctxt: (X, Y), policy())
    ctxt = context()
    reply = mod(train_message(), ctxt, train_step)
    assert not reply.has_error()
    metrics = dict(reply.content["metrics"])
    assert metrics["num-examples"] == len(X)  # the app's own metrics are kept
    ours = {k: v for k, v in metrics.items() if k.startswith("leakaudit.")}
    assert sorted(ours) == sorted(f"leakaudit.{k}" for k in METRICS)
    assert all(isinstance(v, float) for v in ours.values())  # numbers only: no ids, no images
    assert ours["leakaudit.n"] == len(X)
    assert ours["leakaudit.frac_exposed"] == 1.0  # no noise at all: every sample is exposed
    assert ours["leakaudit.sigma_applied"] == 0.0
    assert dict(ctxt.state["leakaudit"]) == ours  # kept locally too
    # Independently: under the reported σ the least protected sample's I²F is exactly τ.
    sigma = ours["leakaudit.sigma_needed"]
    assert math.isfinite(sigma) and sigma > 0
    model = make_model()
    opts = ScoreOptions(scores=("i2f",), n_probes=4, max_iter=24, defense=GaussianNoise(sigma))
    res = score_samples(model, (X, Y), opts)
    assert float(res.scores["i2f"].min()) == pytest.approx(1.0, rel=1e-4)


def test_noise_is_added_with_the_recorded_std() -> None:
    clean = train_step(train_message(), context())
    mod = LeakAuditMod(
        make_model, lambda ctxt: (X, Y), policy(apply_noise=True), rng=np.random.default_rng(1)
    )
    noisy = mod(train_message(), context(), train_step)
    m = dict(noisy.content["metrics"])
    std = m["leakaudit.update_noise_std"]
    assert std == pytest.approx(LR * m["leakaudit.sigma_applied"])
    assert m["leakaudit.sigma_applied"] == pytest.approx(m["leakaudit.sigma_needed"])
    assert m["leakaudit.frac_exposed_after"] == 0.0
    diffs = []
    a, b = clean.content["arrays"], noisy.content["arrays"]
    assert list(a.keys()) == list(b.keys())
    for name in a:
        x, y = a[name].numpy(), b[name].numpy()
        assert x.dtype == y.dtype and x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            diffs.append((y.astype(np.float64) - x).ravel())
        else:  # BatchNorm's num_batches_tracked is not noised
            assert np.array_equal(x, y)
    d = np.concatenate(diffs)
    assert d.size > 500
    assert d.std() == pytest.approx(std, rel=0.1)
    assert abs(d.mean()) < 4 * std / math.sqrt(d.size)


def test_refuses_to_send_when_the_gate_fails() -> None:
    calls = []

    def app(msg: Message, ctxt: Context) -> Message:
        calls.append(1)
        return train_step(msg, ctxt)

    mod = LeakAuditMod(make_model, lambda ctxt: (X, Y), policy(max_exposed=0.0))
    ctxt = context()
    reply = mod(train_message(), ctxt, app)
    assert reply.has_error() and not reply.has_content()
    assert reply.error.code == REFUSED
    assert "index" not in reply.error.reason and "12 samples" in reply.error.reason
    assert calls == []  # the client did not even train
    assert ctxt.state["leakaudit"]["leakaudit.passed"] == 0.0
    # With the noise applied, the same gate passes.
    ok = LeakAuditMod(make_model, lambda c: (X, Y), policy(max_exposed=0.0, apply_noise=True))
    assert not ok(train_message(), context(), app).has_error()


def test_other_messages_pass_through() -> None:
    seen = []
    mod = LeakAuditMod(make_model, lambda ctxt: seen.append("data") or (X, Y), policy())
    msg = train_message(MessageType.EVALUATE)
    reply = mod(msg, context(), lambda m, c: Message(RecordDict(), reply_to=m))
    assert seen == [] and not reply.has_error()


def test_batch_policy_scores_batches() -> None:
    mod = LeakAuditMod(make_model, lambda ctxt: (X, Y), policy(batch_size=4))
    m = dict(mod(train_message(), context(), train_step).content["metrics"])
    assert m["leakaudit.n"] == len(X)
    assert math.isfinite(m["leakaudit.sigma_needed"])


def test_the_example_federation_runs_in_process(capsys) -> None:
    """examples/flower: two clients on digits, one round, through the real ClientApp."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "flower" / "run_in_process.py"
    spec = importlib.util.spec_from_file_location("run_in_process", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    seen = example.run(rounds=1)
    assert len(seen) == 2  # both clients sent, with the noise their check asked for
    for metrics in seen:
        assert metrics["leakaudit.passed"] == 1.0
        assert metrics["leakaudit.frac_exposed_after"] == 0.0
        assert metrics["leakaudit.update_noise_std"] > 0
    assert "mean local accuracy" in capsys.readouterr().out
