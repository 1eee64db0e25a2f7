"""Two clients on digits, federated in this process: the real ClientApp (with the
leakaudit mod) receives each round's global weights as a Flower Message, as a SuperNode
would deliver it, and FedAvg is done here by weighted averaging. No network, no Ray.

    python examples/flower/run_in_process.py --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    Metadata,
    RecordDict,
)

sys.path.insert(0, str(Path(__file__).parent))
from client_app import app
from task import make_model

CLIENTS = 2


def deliver(content: RecordDict, node: int, rnd: int, kind: str) -> Message:
    meta = Metadata(run_id=1, message_id=f"{rnd}-{node}-{kind}", src_node_id=0,
                    dst_node_id=node, reply_to_message_id="", group_id=str(rnd),
                    created_at=time.time(), ttl=3600.0, message_type=kind)  # fmt: skip
    return Message(content=content, metadata=meta)


def fedavg(replies: list[Message]) -> ArrayRecord:
    weights = [float(r.content["metrics"]["num-examples"]) for r in replies]
    records = [r.content["arrays"] for r in replies]
    out = {}
    for name in records[0]:
        arrays = [rec[name].numpy() for rec in records]
        mean = sum(w * a.astype(np.float64) for w, a in zip(weights, arrays)) / sum(weights)
        out[name] = np.asarray(mean.astype(arrays[0].dtype)).reshape(arrays[0].shape)
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in out.items()})


def run(rounds: int) -> list[dict[str, float]]:
    """Returns every client's ``leakaudit.*`` metrics of every round."""
    contexts = [Context(run_id=1, node_id=i + 1, state=RecordDict(), run_config={},
                        node_config={"partition-id": i, "num-partitions": CLIENTS})
                for i in range(CLIENTS)]  # fmt: skip
    arrays = ArrayRecord.from_torch_state_dict(make_model().state_dict())
    seen = []
    for rnd in range(1, rounds + 1):
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})})
        replies = [app(deliver(content, c.node_id, rnd, MessageType.TRAIN), c) for c in contexts]
        for c, r in zip(contexts, replies):
            if r.has_error():
                print(f"round {rnd} client {c.node_id}: refused: {r.error.reason}")
                continue
            ours = {k: v for k, v in r.content["metrics"].items() if k.startswith("leakaudit.")}
            seen.append(ours)
            print(f"round {rnd} client {c.node_id}: " + ", ".join(
                f"{k.removeprefix('leakaudit.')}={v:.4g}" for k, v in ours.items()))  # fmt: skip
        sent = [r for r in replies if not r.has_error()]
        if sent:
            arrays = fedavg(sent)
        content = RecordDict({"arrays": arrays})
        evals = [app(deliver(content, c.node_id, rnd, MessageType.EVALUATE), c) for c in contexts]
        acc = np.mean([float(e.content["metrics"]["accuracy"]) for e in evals])
        print(f"round {rnd}: mean local accuracy of the global model {acc:.3f}")
    return seen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    run(parser.parse_args().rounds)
