"""Two clients on digits under Flower's simulation engine (Ray): each ClientApp runs in
a Ray actor as on a virtual SuperNode, the ServerApp in this process.
Needs ``flwr[simulation]``.

    python examples/flower/run_simulation.py --rounds 2 --num-cpus 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

sys.path.insert(0, str(Path(__file__).parent))
from client_app import app as client_app
from server_app import AuditedFedAvg, federate

CLIENTS = 2


def simulate(
    rounds: int, strategy: AuditedFedAvg | None = None, num_cpus: int = 2
) -> AuditedFedAvg:
    """Runs the federation; returns the server's strategy (its ``audits``)."""
    strategy = strategy or AuditedFedAvg()
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        federate(grid, rounds, strategy)

    # One CPU per client: Ray starts at most num_cpus actors at a time.
    backend = {
        "init_args": {"num_cpus": num_cpus, "num_gpus": 0},
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    }
    run_simulation(server_app=server, client_app=client_app, num_supernodes=CLIENTS,
                   backend_config=backend)  # fmt: skip
    return strategy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    simulate(args.rounds, num_cpus=args.num_cpus)
