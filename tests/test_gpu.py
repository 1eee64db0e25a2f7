"""CUDA runs give the CPU's numbers (skipped without a CUDA device)."""

import pytest
import torch

from leakaudit.defenses import GaussianNoise
from leakaudit.scores.engine import score_samples
from leakaudit.scores.options import ScoreOptions
from tests.ground_truth import make_case

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("name", ["lenet-3ch", "relubn-1ch"])
def test_cuda_equals_cpu_in_float64(name: str) -> None:
    case = make_case(name, n=4)
    kw = dict(dtype=torch.float64, max_iter=30, n_probes=4, defense=GaussianNoise(0.1))
    cpu = score_samples(case.model, (case.X, case.Y), ScoreOptions(device="cpu", **kw))
    gpu = score_samples(case.model, (case.X, case.Y), ScoreOptions(device="cuda", **kw))
    assert gpu.device.startswith("cuda")
    for k in cpu.scores:
        assert torch.allclose(cpu.scores[k], gpu.scores[k], rtol=1e-6, atol=1e-12), k


def test_cuda_is_deterministic_for_a_seed() -> None:
    case = make_case("lenet-1ch", n=4)
    opts = ScoreOptions(device="cuda", n_probes=4, defense=GaussianNoise(0.1))
    a = score_samples(case.model.float(), (case.X.float(), case.Y), opts)
    b = score_samples(case.model.float(), (case.X.float(), case.Y), opts)
    for k in a.scores:
        assert torch.allclose(a.scores[k], b.scores[k], rtol=1e-5), k
