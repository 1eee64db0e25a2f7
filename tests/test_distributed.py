"""Scans sharded over torchrun ranks: the same report as one process, nothing lost when a
rank dies (docs/scaling.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from leakaudit.api import scan
from leakaudit.cli import app
from leakaudit.config import with_overrides
from leakaudit.demo import demo_config
from leakaudit.distributed import DIE_ENV, DIE_EXIT, World, partial_files, rank_file, shard
from leakaudit.report.formats import FormatName
from tests.helpers_torchrun import run_torchrun

#: 12 digits, cheap scores and one Lanczos score; chunks of 2 give each rank 3 chunks.
FLAGS = [
    "--demo", "--first", "12", "--scores", "grad_norm,lavp_l2_max,i2f", "--max-iter", "8",
    "--n-probes", "2", "--chunk-size", "2", "--no-progress",
]  # fmt: skip
SETTINGS = {
    "data.first": 12,
    "scores.select": ["grad_norm", "lavp_l2_max", "i2f"],
    "scores.max_iter": 8,
    "scores.n_probes": 2,
    "scores.chunk_size": 2,
}


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    """The single-process report, as the CLI writes it."""
    report = scan(with_overrides(demo_config(), SETTINGS))
    return json.loads(FormatName.json.to_format().render(report))


def torchrun(tmp_path: Path, *args: str, env: dict[str, str] | None = None, restarts: int = 0):
    """``torchrun --standalone --nproc-per-node=2 -m leakaudit scan ...`` in ``tmp_path``."""
    return run_torchrun(tmp_path, ["scan", *FLAGS, *args], env=env, restarts=restarts)


def records(path: Path) -> list[int]:
    blob = torch.load(path, weights_only=True)
    return sorted(blob["result"]["indices"].tolist())


@pytest.mark.parametrize("total,size,block", [(12, 2, 2), (13, 3, 2), (5, 4, 3), (100, 3, 7)])
def test_shards_are_disjoint_whole_chunks_that_cover_the_data(
    total: int, size: int, block: int
) -> None:
    parts = [shard(total, World(rank=r, size=size), block) for r in range(size)]
    every = sorted(i for p in parts for i in p)
    assert every == list(range(total))  # each sample exactly once
    for part in parts:  # whole chunks of the single-process scan: [k·block, (k+1)·block)
        for k in {i // block for i in part}:
            assert [i for i in part if i // block == k] == [
                i for i in range(k * block, (k + 1) * block) if i < total
            ]


@pytest.mark.slow
def test_torchrun_report_equals_the_single_process_one(
    tmp_path: Path, single: dict[str, Any]
) -> None:
    # A failing gate: rank 0 exits 1 and torchrun fails, but the report is written.
    run = torchrun(tmp_path, "--json", "report.json", "--fail-on", "i2f<1000")
    assert run.returncode == 1, run.stderr
    assert "exitcode  : 1" in run.stderr and "rank      : 0" in run.stderr
    # Rank 1 delivered its shard before rank 0 wrote the report; it exits 0, unless it is
    # still shutting down when rank 0 exits 1: torchrun then stops it (SIGTERM, -15).
    rank1 = re.search(r"rank      : 1 \(local_rank: 1\)\n\s*exitcode  : (-?\d+)", run.stderr)
    assert rank1 is None or rank1.group(1) == "-15", run.stderr
    assert run.stderr.count("gate failed") == 1  # only rank 0 speaks
    assert run.stdout.count("Score distributions") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # partials removed
    merged = json.loads((tmp_path / "report.json").read_text())
    assert merged["samples"] == single["samples"]  # every score and diagnostic, bitwise
    assert merged["risk"] == single["risk"]
    dist = merged["summary"]["distributed"]
    assert dist["world_size"] == 2 and dist["process_group"] == "gloo"
    assert [(r["rank"], r["samples"], r["resumed"]) for r in dist["ranks"]] == [
        (0, 6, 0),
        (1, 6, 0),
    ]
    assert all(r["samples_per_second"] > 0 for r in dist["ranks"])
    assert single["summary"]["distributed"]["world_size"] == 1


@pytest.mark.slow
def test_a_killed_rank_resumes_in_one_process(tmp_path: Path, single: dict[str, Any]) -> None:
    # Rank 1 dies once it has saved 2 samples (its first chunk: indices 2, 3); torchrun
    # then stops rank 0 too. No report; each rank's partial results stay.
    run = torchrun(tmp_path, "--json", "report.json", env={DIE_ENV: "1:2"})
    assert run.returncode != 0
    assert f"exitcode  : {DIE_EXIT}" in run.stderr
    assert not (tmp_path / "report.json").exists()
    sidecar = tmp_path / "report.json.partial.pt"
    rank1 = rank_file(sidecar, World(rank=1, size=2))
    assert records(rank1) == [2, 3]
    saved = {i for p in partial_files(sidecar) for i in records(p)}
    # Resume with another world size: one process reads both ranks' files.
    resumed = CliRunner().invoke(app, ["scan", *FLAGS, "--json", str(tmp_path / "report.json"),
                                       "--resume"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["samples"] == single["samples"]  # nothing lost, nothing counted twice
    assert report["summary"]["resumed_samples"] == len(saved) >= 2
    assert report["summary"]["distributed"]["ranks"][0]["samples"] == 12 - len(saved)
    assert partial_files(sidecar) == []


@pytest.mark.slow
def test_max_restarts_recovers_a_killed_rank(tmp_path: Path, single: dict[str, Any]) -> None:
    # Rank 1 dies after its first chunk; torchrun restarts both ranks, which continue
    # their partial results (keys of the failed attempt in torchrun's store are not read).
    run = torchrun(tmp_path, "--json", "report.json", env={DIE_ENV: "1:2"}, restarts=1)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"exitcode: {DIE_EXIT}" in run.stderr  # the first attempt did fail
    assert "replacing the partial results" not in run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["samples"] == single["samples"]
    ranks = report["summary"]["distributed"]["ranks"]
    assert ranks[1]["resumed"] == 2 and report["summary"]["resumed_samples"] >= 2
    assert sum(r["samples"] + r["resumed"] for r in ranks) == 12  # none twice, none lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_restarted_rank_resumes_by_itself(
    tmp_path: Path, single: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What torchrun --max-restarts does to a rank: run the same command again with
    # TORCHELASTIC_RESTART_COUNT > 0. Without --resume, it continues the partial results.
    cfg = with_overrides(demo_config(), SETTINGS)
    sidecar = tmp_path / "r.json.partial.pt"

    class Stop(Exception):
        pass

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done > 4:
            raise Stop

    with pytest.raises(Stop):
        scan(cfg, progress=stop_after_two_chunks, partial_path=sidecar)
    assert records(sidecar) == [0, 1, 2, 3]
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    report = scan(cfg, partial_path=sidecar)
    assert report.summary["resumed_samples"] == 4
    rendered = json.loads(FormatName.json.to_format().render(report))
    assert rendered["samples"] == single["samples"]
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # a fresh job starts afresh
    assert scan(cfg, partial_path=sidecar).summary["resumed_samples"] == 0


def test_rank_0_shows_the_count_over_all_ranks() -> None:
    from leakaudit.distributed import _Counter

    class Store:  # torchrun's key-value store: add() returns the new value
        def __init__(self) -> None:
            self.values: dict[str, int] = {}

        def add(self, key: str, n: int) -> int:
            self.values[key] = self.values.get(key, 0) + n
            return self.values[key]

    store, seen = Store(), []
    # Both ranks of one scan: the counter's keys are numbered per scan in each process.
    rank0 = _Counter(store, World(rank=0, size=2))
    rank1 = _Counter(store, World(rank=1, size=2))
    rank1.done_key, rank1.ranks_key = rank0.done_key, rank0.ranks_key
    rank0.progress, rank0.total = lambda done, total: seen.append((done, total)), 12
    rank1.add(2)  # resumed on rank 1: no output there
    rank0.add(0)
    rank1.add(3)
    rank0.add(1)
    assert seen == [(2, 12), (6, 12)]
    store.add(rank0.ranks_key, 1)  # rank 1 has finished
    rank1.add(0)
    rank0.wait_all(lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 12)
