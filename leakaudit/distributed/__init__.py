"""Scans sharded over the ranks of a ``torchrun`` job (``torch.distributed``).

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every rank loads the model
and data and scores a disjoint, deterministic shard of the samples: blocks of one chunk
of dataset indices, dealt round-robin (:func:`shard`). The shards are exchanged as plain
tensors, never pickled (:mod:`leakaudit.distributed.exchange`), over the process group
(``gloo`` on CPU; on GPUs ``gloo`` for the exchanged results and ``nccl`` for CUDA
tensors, each rank on its ``LOCAL_RANK`` GPU). Each sample's random vectors are
seeded by its dataset index and every rank forms the chunks a single process forms, so
the merged results are those of a single-process scan, score for score. Every rank
returns the same merged results; only rank 0 writes output.

Fault tolerance: each rank keeps its own partial-results file
(``<sidecar>.rank<r>-of-<w>``, :class:`~leakaudit.resume.PartialResults`), records keyed
by dataset index. A resume reads the files of every rank and of any earlier world size
(they must be on a filesystem all ranks see) and scores only what is missing; a rank
restarted by ``torchrun --max-restarts`` resumes by itself.

Test hook: ``LEAKAUDIT_TEST_DIE_AFTER=<rank>:<n>`` makes that rank exit abruptly (code
:data:`DIE_EXIT`) once it has saved ``n`` freshly scored samples, on the job's first
attempt only (``TORCHELASTIC_RESTART_COUNT`` 0). It exists for the fault-tolerance tests.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from leakaudit.distributed.exchange import all_gather_payloads
from leakaudit.distributed.rows import payload_rows, rows_payload
from leakaudit.errors import InputError
from leakaudit.resume import (
    DigestingDataset,
    PartialResults,
    load_partials,
    remove_partial,
    select_rows,
)
from leakaudit.scores.data import Positioned
from leakaudit.scores.engine import (
    concat_results,
    planned_chunk_size,
    resolve_device,
    score_samples,
)
from leakaudit.scores.options import ScoreOptions, ScoreResult

#: The environment variable of the test hook (see the module docstring).
DIE_ENV = "LEAKAUDIT_TEST_DIE_AFTER"
DIE_EXIT = 86

ProgressFn = Callable[[int, int], None]


class IdleRankWarning(UserWarning):
    """Some ranks have no samples: the data is smaller than ranks × chunk size."""


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` ranks.

    Attributes:
        rank, size: the global rank and world size (``RANK``, ``WORLD_SIZE``).
        local_rank: the rank on this machine, which picks its GPU (``LOCAL_RANK``).
        restart: how often torchrun restarted the job (``TORCHELASTIC_RESTART_COUNT``).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    restart: int = 0

    @property
    def main(self) -> bool:
        """Whether this rank writes the report (rank 0)."""
        return self.rank == 0


def current_world() -> World:
    """The :class:`World` torchrun describes in the environment (one rank without it)."""
    env = os.environ
    return World(
        rank=int(env.get("RANK", 0)),
        size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        restart=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
    )


@contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Warnings raised inside are shown by rank 0 only: the other ranks' are the same."""
    with warnings.catch_warnings():
        if not current_world().main:
            warnings.simplefilter("ignore")
        yield


def shard(total: int, world: World, block: int = 1) -> list[int]:
    """The dataset indices ``world.rank`` scores: blocks of ``block`` consecutive indices,
    dealt round-robin (block ``k`` to rank ``k mod size``).

    With ``block`` the engine's chunk size every rank scores exactly the chunks a single
    process forms, so the numbers are the same bit for bit (float rounding in a batched
    product depends on which samples share the batch).
    """
    blocks = range(world.rank, -(-total // block), world.size)
    return [i for k in blocks for i in range(k * block, min((k + 1) * block, total))]


def rank_file(sidecar: Path, world: World) -> Path:
    """This rank's partial-results file: ``sidecar`` itself for a single process."""
    if world.size == 1:
        return sidecar
    return sidecar.with_name(f"{sidecar.name}.rank{world.rank}-of-{world.size}")


def partial_files(sidecar: str | Path) -> list[Path]:
    """Every existing partial-results file of ``sidecar``: its own and each rank's."""
    sidecar = Path(sidecar)
    ranks = glob.glob(glob.escape(str(sidecar)) + ".rank*-of-*")
    return [p for p in [sidecar, *map(Path, sorted(ranks))] if p.is_file()]


def remove_partials(sidecar: str | Path) -> None:
    """Delete every partial-results file of ``sidecar`` (nothing else)."""
    for path in partial_files(sidecar):
        remove_partial(path)


@dataclasses.dataclass
class Sharded:
    """The merged results of every rank.

    Attributes:
        result: every sample's scores, sorted by dataset index.
        digests: ``[N, 32]`` uint8 sample digests, aligned with ``result``.
        resumed: samples taken from partial results.
        section: the report's ``summary.distributed``: world size, backend, and per rank
            the samples it scored and resumed, its scoring seconds and samples/s.
    """

    result: ScoreResult
    digests: Tensor
    resumed: int
    section: dict[str, Any]


@dataclasses.dataclass
class _Shard:
    """One rank's results: its resumed and freshly scored samples."""

    partial: PartialResults
    resumed: int
    fresh: ScoreResult | None
    seconds: float


def score_sharded(
    model: nn.Module,
    dataset: Any,
    ids: list[str],
    options: ScoreOptions,
    key: str,
    *,
    progress: ProgressFn | None = None,
    resume_path: str | Path | None = None,
    partial_path: str | Path | None = None,
    digests: bool = True,
) -> Sharded:
    """Score ``dataset`` over the ranks of the job (one rank outside torchrun).

    Args:
        model, dataset, ids, options: as for the engine; ``ids`` name the samples.
        key: the scan's :func:`~leakaudit.resume.fingerprint`.
        progress: ``progress(done, total)`` over all ranks, called on rank 0.
        resume_path: the sidecar whose partial files (of any world size) to continue.
        partial_path: the sidecar this job's ranks checkpoint to (default:
            ``resume_path``); without either, nothing is saved.
        digests: hash every sample read (:func:`~leakaudit.resume.sample_digest`); with
            ``False`` (only without ``resume_path``/``partial_path``) the result's
            digests are zero rows, for callers that never read them.

    Returns:
        The same merged :class:`Sharded` on every rank.
    """
    world = current_world()
    sidecar = partial_path if partial_path is not None else resume_path
    if not digests and sidecar is not None:  # before any rank joins the group
        raise ValueError("partial results need the samples' digests")
    if resume_path is None and world.restart > 0 and sidecar is not None:
        resume_path = sidecar  # a rank restarted by torchrun continues its job
    device = resolve_device(options.device)
    with _process_group(world, device) as counter:
        counter.progress, counter.total = progress, len(ids)
        if resume_path is None and sidecar is not None and world.main:
            remove_partials(sidecar)  # stale records of another run must not mix in
        _barrier(world)
        mine = _score_shard(
            model, dataset, ids, options, key, world, counter, resume_path, sidecar, digests
        )
        counter.wait_all(progress)  # every rank says it is done; rank 0 shows the count
        hashes = {"digests": mine.partial.digests}
        sent = rows_payload(mine.partial.result, hashes, _stats(mine, world))
        shards = [payload_rows(p) for p in all_gather_payloads(sent, world.size)]
    return _merge([(r, t["digests"], s) for r, t, s in shards], world, device)


def _score_shard(
    model: nn.Module,
    dataset: Any,
    ids: list[str],
    options: ScoreOptions,
    key: str,
    world: World,
    counter: _Counter,
    resume_path: str | Path | None,
    sidecar: str | Path | None,
    digests: bool,
) -> _Shard:
    """Score this rank's shard, continuing the partial results of ``resume_path``."""
    total = len(ids)
    options = replace(options, chunk_size=planned_chunk_size(model, dataset, options))
    block = options.chunk_size or 1
    positions = shard(total, world, block)
    _warn_if_idle(total, world, block)
    files = partial_files(resume_path) if resume_path is not None else []
    done = load_partials(files, key, dataset, ids, positions, options.scores) if files else None
    path = rank_file(Path(sidecar), world) if sidecar is not None else None
    partial = PartialResults(path, key, total, *(done or ()))
    resumed = partial.count
    counter.add(resumed)
    finished = set(partial.result.indices.tolist()) if partial.result is not None else set()
    remaining = [p for p in positions if p not in finished]
    if not remaining:
        return _Shard(partial, resumed, None, 0.0)
    data = DigestingDataset(dataset, hashing=digests)
    die = _die_after(world)

    def save(part: ScoreResult) -> None:
        partial.add(part, data.take(part.indices))
        die(partial.count - resumed)

    fresh = score_samples(
        model, Positioned(data, remaining), options, progress=counter.add, on_chunk=save
    )
    return _Shard(partial, resumed, fresh, fresh.seconds)


def _warn_if_idle(total: int, world: World, block: int) -> None:
    blocks = -(-total // block)
    if blocks < world.size:
        warnings.warn(
            f"{world.size - blocks} of {world.size} ranks have no samples: the "
            f"{total} samples make {blocks} chunk(s) of {block}; a smaller --chunk-size "
            "spreads them",
            IdleRankWarning,
            stacklevel=2,
        )


def _stats(mine: _Shard, world: World) -> dict[str, Any]:
    scored = mine.partial.count - mine.resumed
    return {
        "rank": world.rank,
        "samples": scored,
        "resumed": mine.resumed,
        "seconds": mine.seconds,
        "samples_per_second": scored / mine.seconds if mine.seconds > 0 else None,
        "backend": mine.fresh.backend if mine.fresh is not None else None,
        "device": mine.fresh.device if mine.fresh is not None else None,
    }


def _merge(shards: list[Any], world: World, device: torch.device) -> Sharded:
    """The ranks' results as one, sorted by dataset index."""
    held = [(r, d) for r, d, _ in shards if r is not None]  # a rank may have no samples
    stats = [s for _, _, s in shards]
    ran = [s for s in stats if s["backend"] is not None]
    result = concat_results([r for r, _ in held])
    digests = torch.cat([d for _, d in held])
    order = torch.argsort(result.indices)
    result, digests = select_rows(result, order), digests[order]
    backends = {s["backend"] for s in ran} or {result.backend}
    result.backend = backends.pop() if len(backends) == 1 else "mixed"
    result.device = ran[0]["device"] if ran else result.device
    for s in stats:
        del s["backend"], s["device"]
    section = {
        "world_size": world.size,
        "process_group": _backend(device) if world.size > 1 else None,
        "ranks": stats,
    }
    resumed = sum(s["resumed"] for s in stats)
    return Sharded(result=result, digests=digests, resumed=resumed, section=section)


def _backend(device: torch.device) -> str:
    """gloo on CPU; on GPUs nccl for CUDA tensors and gloo for the exchanged results
    (CPU tensors, :mod:`leakaudit.distributed.exchange`)."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


class _Counter:
    """Samples finished over all ranks, in the job's key-value store (exact, no
    collective calls): every rank adds, rank 0 reads."""

    _calls = itertools.count()

    def __init__(self, store: Any, world: World) -> None:
        self.store, self.world = store, world
        prefix = f"scan{next(self._calls)}"
        self.done_key, self.ranks_key = f"{prefix}/samples", f"{prefix}/ranks"
        self.local = 0
        self.total = 0
        self.progress: ProgressFn | None = None

    def add(self, n: int) -> None:
        self.local += n
        done = self.store.add(self.done_key, n) if self.store is not None else self.local
        if self.progress is not None:
            self.progress(done, self.total)

    def wait_all(self, progress: ProgressFn | None) -> None:
        """Say this rank has finished; with ``progress`` (rank 0), keep showing the global
        count until every rank has finished."""
        if self.store is None:
            return
        self.store.add(self.ranks_key, 1)
        if progress is None:
            return
        while self.store.add(self.ranks_key, 0) < self.world.size:
            progress(self.store.add(self.done_key, 0), self.total)
            time.sleep(0.2)
        progress(self.store.add(self.done_key, 0), self.total)


#: The store of the process group this module joined, while it lasts: a scan or an
#: attack run inside :func:`process_group` shares that group (and counts in its store).
_JOINED: list[Any] = []
#: Groups this process has joined: every rank joins them in the same order.
_GROUPS = itertools.count()


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the job's process group for a whole command (a no-op outside torchrun); every
    sharded step inside shares it. Each rank uses its ``LOCAL_RANK`` GPU when ``device``
    is CUDA."""
    with _process_group(current_world(), device):
        yield


@contextmanager
def _process_group(world: World, device: torch.device) -> Iterator[_Counter]:
    """The job's process group (joined here unless this module or the caller already
    did), with the global sample counter."""
    import torch.distributed as dist

    if world.size == 1:
        yield _Counter(None, world)
        return
    if _JOINED:  # inside process_group(): the same group, counting in its store
        yield _Counter(_JOINED[-1], world)
        return
    if dist.is_initialized():  # the caller's own group: no store to count in
        yield _Counter(None, world)
        return
    if device.type == "cuda":
        _use_local_gpu(world)
    store, rank, size = next(dist.rendezvous("env://"))
    # torchrun's store outlives a restart and this group: keys of a failed attempt, or of
    # a group this process joined before (one per command), must not be read.
    prefix = f"leakaudit/attempt{world.restart}/group{next(_GROUPS)}"
    store = dist.PrefixStore(prefix, store)
    dist.init_process_group(_backend(device), store=store, rank=rank, world_size=size)
    _JOINED.append(store)
    try:
        yield _Counter(store, world)
    finally:
        _JOINED.pop()
        dist.destroy_process_group()


def _use_local_gpu(world: World) -> None:
    """Make this rank's GPU (``LOCAL_RANK``) the current CUDA device."""
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise InputError(
            f"rank {world.rank} has LOCAL_RANK {world.local_rank}, but this machine has "
            f"{count} CUDA device(s): start at most {count} processes per node "
            "(torchrun --nproc-per-node), or scan with --device cpu"
        )
    torch.cuda.set_device(world.local_rank)


def _barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def _die_after(world: World) -> Callable[[int], None]:
    """The test hook: a check to call with the samples this rank saved so far."""
    spec = os.environ.get(DIE_ENV, "")
    if not spec or world.restart > 0:
        return lambda n: None
    rank, _, limit = spec.partition(":")
    if int(rank) != world.rank:
        return lambda n: None

    def check(n: int) -> None:
        if n >= int(limit):
            os._exit(DIE_EXIT)

    return check


__all__ = [
    "DIE_ENV",
    "DIE_EXIT",
    "IdleRankWarning",
    "Sharded",
    "World",
    "current_world",
    "partial_files",
    "process_group",
    "quiet_unless_main",
    "rank_file",
    "remove_partials",
    "score_sharded",
    "shard",
]
