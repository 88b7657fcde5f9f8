"""A strict reader for the IDX files MNIST and Fashion-MNIST ship as: gzip-compressed
(.gz, as published) or not (as torchvision unpacks them beside the .gz files).

IDX (LeCun's format): a 4-byte magic number -- two zero bytes, a type code and the
number of dimensions -- then one big-endian uint32 per dimension, then the data in
row-major order. Both datasets use type 0x08 (unsigned byte).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """An IDX file that is truncated, corrupt or not what was expected."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _read_all(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise IdxFormatError(path, "gzip stream ends early (file truncated?)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise IdxFormatError(path, f"not a valid gzip file ({e})") from None


def read_idx(path: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file (gzip-compressed when its name ends in .gz) into an array; `ndim`,
    when given, is checked."""
    path = Path(path)
    raw = _read_all(path)
    if len(raw) < 4:
        raise IdxFormatError(path, f"only {len(raw)} bytes, shorter than the 4-byte header")
    zero, type_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _DTYPES:
        raise IdxFormatError(path, f"bad magic number 0x{raw[:4].hex()} (expected 0x0000TTDD)")
    if ndim is not None and dims != ndim:
        raise IdxFormatError(path, f"has {dims} dimensions, expected {ndim}")
    header_end = 4 + 4 * dims
    if len(raw) < header_end:
        raise IdxFormatError(path, f"header needs {header_end} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{dims}I", raw[4:header_end])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_end
    if actual != expected:
        raise IdxFormatError(
            path, f"shape {shape} needs {expected} data bytes, file has {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)
