"""Choosing which samples to audit: explicit indices, the first N, at most N per class."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from torch import Tensor

from leakaudit.errors import InputError
from leakaudit.models.choices import shorten


def select_positions(
    labels: Tensor,
    *,
    indices: Sequence[int] | None = None,
    first: int | None = None,
    per_class: int | None = None,
) -> list[int]:
    """Positions into a dataset of ``len(labels)`` samples, applied in this order:
    ``indices`` (by position, in the given order), then the ``first`` N of those, then at
    most ``per_class`` of each label, keeping dataset order.

    Args:
        labels: ``[N]`` integer labels of the whole dataset.
        indices: Positions to keep, each in ``[0, N)``, no repeats.
        first: Keep only the first this-many positions.
        per_class: Keep at most this many samples of each label.

    Raises:
        InputError: out-of-range or repeated indices, non-positive ``first``/``per_class``.
    """
    size = len(labels)
    positions = list(range(size))
    if indices is not None:
        bad = [str(i) for i in indices if not 0 <= int(i) < size]
        if bad:
            raise InputError(
                f"indices out of range for a dataset of {size} samples "
                f"(valid: 0..{size - 1}): {shorten(bad)}"
            )
        repeated = [str(i) for i, c in Counter(int(i) for i in indices).items() if c > 1]
        if repeated:
            raise InputError(f"indices repeat samples: {shorten(repeated)}")
        positions = [int(i) for i in indices]
    if first is not None:
        if first < 1:
            raise InputError(f"first must be >= 1, not {first}")
        positions = positions[:first]
    if per_class is not None:
        if per_class < 1:
            raise InputError(f"per_class must be >= 1, not {per_class}")
        seen: Counter[int] = Counter()
        kept = []
        for pos in positions:
            label = int(labels[pos])
            if seen[label] < per_class:
                seen[label] += 1
                kept.append(pos)
        positions = kept
    return positions
