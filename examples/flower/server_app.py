"""The ServerApp: plain FedAvg (for ``flwr run . local-simulation``, which needs
``flwr[simulation]``); the clients' ``leakaudit.*`` metrics arrive aggregated."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from task import make_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config.get("num-server-rounds", 2))
    arrays = ArrayRecord.from_torch_state_dict(make_model().state_dict())
    result = FedAvg(fraction_train=1.0, fraction_evaluate=1.0).start(
        grid=grid, initial_arrays=arrays, num_rounds=rounds
    )
    for rnd, metrics in result.train_metrics_clientapp.items():
        print(rnd, {k: v for k, v in metrics.items() if k.startswith("leakaudit.")})
