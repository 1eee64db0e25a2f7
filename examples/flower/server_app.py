"""The ServerApp: FedAvg that also keeps every client's ``leakaudit.*`` metrics.

Run it with Flower's simulation engine (``flwr[simulation]``, i.e. Ray)::

    python examples/flower/run_simulation.py --rounds 2

FedAvg's own aggregate averages the clients' metrics, which hides the client that needed
the most noise; :class:`AuditedFedAvg` keeps each reply's ``leakaudit.*`` numbers too.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from task import make_model

PREFIX = "leakaudit."
#: Which client a reply came from (kept per client, left out of the weighted average).
CLIENT_KEY = "partition-id"


def _average_without_ids(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """FedAvg's weighted average of the metrics, less the client ids."""
    stripped = [
        RecordDict({name: MetricRecord({k: v for k, v in rec.items() if k != CLIENT_KEY})
                    for name, rec in content.metric_records.items()})
        for content in records
    ]  # fmt: skip
    return aggregate_metricrecords(stripped, weighted_by_key)


class AuditedFedAvg(FedAvg):
    """FedAvg; ``audits[round]`` lists each client's ``leakaudit.*`` metrics (and its
    ``partition-id``), and ``refusals[round]`` the reasons of the clients that refused."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", _average_without_ids)
        super().__init__(**kwargs)
        self.audits: dict[int, list[dict[str, float]]] = {}
        self.refusals: dict[int, list[str]] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.refusals[server_round] = [r.error.reason for r in replies if r.has_error()]
        self.audits[server_round] = [
            {k: float(v) for k, v in r.content["metrics"].items()
             if k.startswith(PREFIX) or k == CLIENT_KEY}
            for r in replies if not r.has_error()
        ]  # fmt: skip
        return super().aggregate_train(server_round, replies)


def federate(grid: Grid, rounds: int, strategy: AuditedFedAvg | None = None) -> AuditedFedAvg:
    """Runs ``rounds`` of FedAvg from the demo weights; returns the strategy."""
    strategy = strategy or AuditedFedAvg()
    arrays = ArrayRecord.from_torch_state_dict(make_model().state_dict())
    strategy.start(grid=grid, initial_arrays=arrays, num_rounds=rounds)
    for rnd, audits in strategy.audits.items():
        for audit in audits:
            shown = ", ".join(
                f"{k.removeprefix(PREFIX)}={v:.4g}" for k, v in audit.items() if k != CLIENT_KEY
            )
            print(f"round {rnd} client {int(audit[CLIENT_KEY])}: {shown}")
        for reason in strategy.refusals[rnd]:
            print(f"round {rnd}: refused: {reason}")
    return strategy


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    federate(grid, int(context.run_config.get("num-server-rounds", 2)))
