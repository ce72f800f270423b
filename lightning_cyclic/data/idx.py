"""A reader for IDX files, the format of MNIST and Fashion-MNIST (numpy only).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 dimensions, then the values, big-endian, in C order.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

# dtype code of the magic number -> big-endian numpy dtype of the values
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a numpy array in native byte order.

    Compression is detected from the file's first bytes, not its name, so a ``.gz``
    file that a browser already decompressed still reads.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``.

    Returns:
        A new, writable array of shape given by the file's dimensions (``(60000, 28, 28)``
        for MNIST's training images) and the dtype given by its magic number.

    Raises:
        ValueError: bad magic number, unknown dtype code, truncated or oversized data, or a
            corrupt gzip stream; the message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: not a valid gzip file ({err})") from err
    return parse_idx(raw, name=str(path))


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file; ``name`` goes into error messages."""
    if len(data) < 4:
        raise ValueError(f"{name}: truncated IDX file, {len(data)} bytes is shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        codes = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(
            f"{name}: bad IDX magic number 0x{data[:4].hex().upper()}; expected 0x0000 followed by a dtype code "
            f"({codes}) and the number of dimensions (is it an IDX file?)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{name}: truncated IDX file, {len(data)} bytes is shorter than the {header_len}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        problem = "truncated IDX file" if actual < expected else "IDX file longer than its header says"
        raise ValueError(
            f"{name}: {problem}: dimensions {dims} of {dtype.name} need {expected} bytes of data, found {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)
