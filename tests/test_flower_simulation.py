"""examples/flower under Flower's simulation engine (Ray): two ClientApps in Ray actors,
two rounds of FedAvg. From the server side: both clients' ``leakaudit.*`` metrics arrive
every round, and each update carries exactly the noise its client reports (the server
replays the client's noiseless local training and measures the difference).

Skipped without ``flwr[simulation]``; ``LEAKAUDIT_REQUIRE_FLOWER_SIM=1`` (CI's Flower
job) turns the skip into a failure."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flower"
ROUNDS, CLIENTS = 2, 2


def _missing() -> str | None:
    for name in ("flwr", "ray"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed (pip install 'flwr[simulation]')"
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("LEAKAUDIT_REQUIRE_FLOWER_SIM") == "1":
        raise ImportError(f"LEAKAUDIT_REQUIRE_FLOWER_SIM=1 but {_reason}")
    pytest.skip(_reason, allow_module_level=True)

from flwr.app import ArrayRecord, ConfigRecord  # noqa: E402

from leakaudit.integrations.privacy import METRICS  # noqa: E402


@pytest.fixture
def example(monkeypatch):
    """The example's modules, importable here and (via sys.path) in Ray's workers."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # flwr extends it
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    import run_simulation
    import task

    return run_simulation, task


def test_two_clients_two_rounds_under_ray(example) -> None:
    run_simulation, task = example
    sent: dict[int, ArrayRecord] = {}
    received: dict[int, list[ArrayRecord]] = {}

    class Recording(run_simulation.AuditedFedAvg):
        """Also keeps the global arrays sent and the arrays received each round."""

        def configure_train(self, server_round, arrays, config: ConfigRecord, grid):
            sent[server_round] = arrays
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            received[server_round] = [r.content["arrays"] for r in replies if not r.has_error()]
            return super().aggregate_train(server_round, replies)

    strategy = run_simulation.simulate(ROUNDS, Recording(), num_cpus=2)

    assert sorted(strategy.audits) == list(range(1, ROUNDS + 1))
    for rnd, audits in strategy.audits.items():
        assert strategy.refusals[rnd] == []
        assert sorted(int(a["partition-id"]) for a in audits) == list(range(CLIENTS))
        for audit, arrays in zip(audits, received[rnd]):
            assert sorted(k for k in audit if k != "partition-id") == sorted(
                f"leakaudit.{k}" for k in METRICS
            )
            assert audit["leakaudit.n"] == task.SAMPLES_PER_CLIENT
            assert audit["leakaudit.passed"] == 1.0
            assert audit["leakaudit.frac_exposed_after"] == 0.0
            std = audit["leakaudit.update_noise_std"]
            assert std == pytest.approx(task.LR * audit["leakaudit.sigma_applied"])
            assert math.isfinite(std) and std > 0
            noise = _replayed_noise(task, sent[rnd], arrays, int(audit["partition-id"]), rnd)
            assert noise.size > 1000
            assert noise.std() == pytest.approx(std, rel=0.1)
            assert abs(noise.mean()) < 4 * std / math.sqrt(noise.size)


def _replayed_noise(task, global_arrays: ArrayRecord, reply: ArrayRecord, partition: int,
                    rnd: int) -> np.ndarray:  # fmt: skip
    """The reply minus the client's own noiseless training, over its float arrays."""
    model = task.make_model()
    model.load_state_dict(global_arrays.to_torch_state_dict())
    x, y = task.client_data(partition, CLIENTS)
    task.train(model, x, y, seed=rnd)
    clean = model.state_dict()
    got = reply.to_torch_state_dict()
    assert list(got) == list(clean)
    diffs = [
        (got[k].double() - clean[k].double()).ravel().numpy()
        for k in clean
        if clean[k].is_floating_point()
    ]
    return np.concatenate(diffs)
