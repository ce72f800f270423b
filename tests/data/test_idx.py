"""The IDX reader on files written here, byte by byte, gzipped and raw."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from lightning_cyclic.data.idx import read_idx

CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, written from the format's description (independent of the reader)."""
    header = bytes([0, 0, CODES[array.dtype.name], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends with ``.gz``."""
    data = idx_bytes(np.asarray(array))
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", list(CODES))
def test_round_trip_values_dtype_and_shape(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    if dtype.startswith("float"):
        array = rng.normal(size=(3, 4, 5)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    out = read_idx(write_idx(tmp_path / f"a-idx3{suffix}", array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 0  # a writable, independent array


def test_reads_the_format_as_specified(tmp_path):
    # 2x3 uint8 matrix 0..5, then big-endian int16 [258, -2]: bytes written by hand
    matrix = tmp_path / "m"
    matrix.write_bytes(b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03" + bytes(range(6)))
    np.testing.assert_array_equal(read_idx(matrix), [[0, 1, 2], [3, 4, 5]])
    vector = tmp_path / "v"
    vector.write_bytes(b"\x00\x00\x0b\x01" + b"\x00\x00\x00\x02" + b"\x01\x02\xff\xfe")
    out = read_idx(str(vector))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, [258, -2])


def test_labels_file_and_empty_array(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "labels-idx1-ubyte.gz", labels)), labels)
    assert read_idx(write_idx(tmp_path / "empty", np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


def test_compression_is_detected_from_the_content_not_the_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = tmp_path / "raw.gz"  # what a browser leaves after decompressing a download
    raw_named_gz.write_bytes(idx_bytes(array))
    gz_named_raw = tmp_path / "compressed"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)


@pytest.mark.parametrize(
    "content",
    [
        b"\x01\x00\x08\x01\x00\x00\x00\x01\x07",  # first byte not 0
        b"\x00\x00\x0a\x01\x00\x00\x00\x01\x07",  # unknown dtype code 0x0A
        b"<!DOCTYPE html><html>404 Not Found</html>",  # a saved error page
    ],
)
def test_bad_magic_number_names_the_file(tmp_path, content):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad IDX magic number") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_bad_magic_number_inside_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"not an idx file at all"))
    with pytest.raises(ValueError, match=r"bad\.gz: bad IDX magic number"):
        read_idx(path)


def test_truncated_files_name_the_file(tmp_path):
    data = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4))
    cases = {
        "short-data": (
            data[:-1],
            r"truncated IDX file: dimensions \(2, 3, 4\) of int32 need 96 bytes of data, found 95",
        ),
        "short-header": (data[:9], "truncated IDX file, 9 bytes is shorter than the 16-byte header"),
        "short-magic": (data[:3], "truncated IDX file, 3 bytes is shorter than the 4-byte magic number"),
        "too-long": (data + b"\x00", "longer than its header says"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as err:
            read_idx(path)
        assert str(err.value).startswith(str(path))


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8)))[:-20])
    with pytest.raises(ValueError, match="not a valid gzip file") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
