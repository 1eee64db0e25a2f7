"""PNG images for self-contained reports, written with ``zlib`` (no imaging library).

PNG (ISO/IEC 15948): an 8-byte signature, then ``IHDR`` (size, 8-bit grey or RGB),
one ``IDAT`` holding the deflated scanlines (filter byte 0 before each row) and
``IEND``; every chunk is length, type, data and the CRC-32 of type and data.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
from torch import Tensor

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types by channel count: grey, RGB.
_COLOUR_TYPE = {1: 0, 3: 2}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray) -> bytes:
    """``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) uint8 pixels as PNG bytes.

    Raises:
        ValueError: another shape or dtype.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        shape = list(pixels.shape)
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3] pixels, got {pixels.dtype} {shape}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in _COLOUR_TYPE:
        raise ValueError(f"expected 1 or 3 channels, got {channels}")
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, w * channels)
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def image_png(x: Tensor) -> bytes:
    """A ``[C, H, W]`` image valued in [0, 1] as PNG bytes: the first channel as grey when
    there are fewer than three, else the first three as RGB; values outside [0, 1] are
    clipped, NaN is black."""
    a = np.nan_to_num(x.detach().to("cpu").double().numpy(), nan=0.0)
    a = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.shape[0] < 3:
        return encode_png(a[0])
    return encode_png(np.transpose(a[:3], (1, 2, 0)))


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: PNG bytes for an ``<img src>`` inside the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
