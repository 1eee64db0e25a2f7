"""The federation's model, data and local training: the shipped demo LeNet on
scikit-learn's 8×8 digits, split between the clients by sample position."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torch import Tensor, nn

from leakaudit.demo import DEMO_CHECKPOINT, DEMO_MEAN, DEMO_STD
from leakaudit.models import build_model

#: Samples each client trains on (and the mod scores), and its batch size.
SAMPLES_PER_CLIENT = 32
BATCH_SIZE = 16
LR = 0.05


def make_model() -> nn.Module:
    """The demo's LeNet (1×8×8 digits, 10 classes) with its trained weights."""
    model = build_model("lenet", num_classes=10, in_channels=1, image_size=8)
    model.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    return model


def client_data(partition: int, partitions: int) -> tuple[Tensor, Tensor]:
    """Client ``partition``'s digits, normalised as the demo model expects."""
    digits = load_digits()
    idx = list(range(partition, 1200, partitions))[:SAMPLES_PER_CLIENT]
    x = torch.tensor(digits.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1)
    return (x - DEMO_MEAN) / DEMO_STD, torch.tensor(digits.target[idx])


def train(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> float:
    """One local epoch of SGD over seeded shuffled batches; returns the mean loss."""
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True, generator=gen
    )
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    losses = []
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
