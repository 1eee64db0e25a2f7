"""The ClientApp: local training, wrapped in leakaudit's privacy mod."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from task import BATCH_SIZE, LR, accuracy, client_data, make_model, train

from leakaudit.integrations.flower import LeakAuditMod
from leakaudit.integrations.privacy import RoundPolicy


def local_data(context: Context):
    """This node's samples (they never leave it; the mod reads them to score them)."""
    cfg = context.node_config
    return client_data(int(cfg["partition-id"]), int(cfg["num-partitions"]))


#: Score each round's batches as the client trains on them, add the noise that keeps
#: every sample's predicted reconstruction error >= 1 (input units), refuse otherwise.
POLICY = RoundPolicy(target_error=1.0, apply_noise=True, max_exposed=0.0, lr=LR,
                     batch_size=BATCH_SIZE)  # fmt: skip

app = ClientApp(mods=[LeakAuditMod(make_model, local_data, POLICY)])


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    model = make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = local_data(context)
    # FedAvg puts the round number in the config: each round shuffles its own way.
    loss = train(model, x, y, seed=int(msg.content["config"].get("server-round", 0)))
    partition = int(context.node_config["partition-id"])
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(x), "partition-id": partition})
    arrays = ArrayRecord.from_torch_state_dict(model.state_dict())
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    model = make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = local_data(context)
    metrics = MetricRecord({"accuracy": accuracy(model, x, y), "num-examples": len(x)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
