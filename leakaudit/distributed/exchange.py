"""Every rank's results on every rank, through tensor collectives only: no pickle.

``torch.distributed.all_gather_object`` unpickles what the other ranks send, so a rank
that is not what it claims could run code on rank 0. Here a rank sends a
:class:`Payload`, JSON metadata and named tensors, encoded as one ``uint8`` tensor:
an 8-byte length, the JSON header (``json.loads`` on the receiving side) and the raw
bytes of each tensor, described in the header by dtype (from :data:`DTYPES` only),
shape and offset. Two ``all_gather`` calls move it: the lengths (``int64``), then the
payloads padded to the longest. A bad payload is refused (:class:`PayloadError`); a
rank can still send wrong numbers, never code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from leakaudit.errors import RuntimeFailure

#: The dtypes a payload may carry, by name.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}
_LENGTH = 8  # bytes of the header's length, little-endian


class PayloadError(RuntimeFailure):
    """Bytes from another rank that are not a well-formed payload (a runtime failure of
    the job, exit 3: the user's input is not at fault)."""


@dataclasses.dataclass
class Payload:
    """What one rank sends: JSON-able ``meta`` and named CPU ``tensors``."""

    meta: dict[str, Any]
    tensors: dict[str, Tensor] = dataclasses.field(default_factory=dict)


def encode(payload: Payload) -> Tensor:
    """``payload`` as a ``uint8`` tensor (see the module docstring)."""
    entries, blobs, offset = [], [], 0
    for name, tensor in payload.tensors.items():
        t = tensor.detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise TypeError(f"tensor {name!r}: dtype {t.dtype} cannot be exchanged")
        raw = np.ascontiguousarray(t.numpy()).tobytes()
        entries.append({"name": name, "dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "offset": offset})  # fmt: skip
        blobs.append(raw)
        offset += len(raw)
    header = json.dumps({"meta": payload.meta, "tensors": entries}).encode("utf-8")
    data = len(header).to_bytes(_LENGTH, "little") + header + b"".join(blobs)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode(blob: Tensor) -> Payload:
    """The payload :func:`encode` made.

    Raises:
        PayloadError: not a payload: bad lengths, JSON, dtype, shape or offsets.
    """
    data = blob.cpu().numpy().tobytes()
    size = int.from_bytes(data[:_LENGTH], "little")
    if len(data) < _LENGTH or size > len(data) - _LENGTH:
        raise PayloadError("payload shorter than its header")
    try:  # any malformed header (types, infinities, nesting) is the sender's fault
        header = json.loads(data[_LENGTH : _LENGTH + size].decode("utf-8"))
        meta, entries = header["meta"], header["tensors"]
        if not isinstance(meta, dict) or not isinstance(entries, list):
            raise TypeError("meta must be an object and tensors a list")
        body = data[_LENGTH + size :]
        tensors = {str(e["name"]): _tensor(e, body) for e in entries}
    except PayloadError:
        raise
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        raise PayloadError(f"payload header is not valid: {exc!r}"[:300]) from None
    return Payload(meta, tensors)


def _tensor(entry: Any, body: bytes) -> Tensor:
    """One tensor of a payload's body, after checking its description."""
    try:
        dtype = DTYPES[entry["dtype"]]
        shape = [int(s) for s in entry["shape"]]
        offset = int(entry["offset"])
    except (KeyError, TypeError, ValueError):
        raise PayloadError(f"payload tensor description is not valid: {entry!r}") from None
    count = math.prod(shape)
    nbytes = count * torch.empty(0, dtype=dtype).element_size()
    if min(shape, default=0) < 0 or offset < 0 or offset + nbytes > len(body):
        raise PayloadError(f"payload tensor {entry.get('name')!r} lies outside the payload")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    raw = bytearray(body[offset : offset + nbytes])
    if dtype == torch.bool and any(b > 1 for b in raw):
        raise PayloadError(f"payload tensor {entry.get('name')!r}: booleans other than 0/1")
    return torch.frombuffer(raw, dtype=dtype).reshape(shape)


def all_gather_payloads(mine: Payload, size: int) -> list[Payload]:
    """Every rank's payload, in rank order, on every rank of the current process group
    (of ``size`` ranks): lengths first, then the payloads padded to the longest."""
    if size == 1:
        return [mine]
    import torch.distributed as dist

    blob = encode(mine)
    lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(size)]
    dist.all_gather(lengths, torch.tensor([blob.numel()], dtype=torch.int64))
    longest = max(int(n) for n in lengths)
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: blob.numel()] = blob
    blobs = [torch.empty(longest, dtype=torch.uint8) for _ in range(size)]
    dist.all_gather(blobs, padded)
    return [decode(b[: int(n)]) for b, n in zip(blobs, lengths)]


__all__ = ["DTYPES", "Payload", "PayloadError", "all_gather_payloads", "decode", "encode"]
