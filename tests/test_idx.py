"""The IDX parser on the real files and on every kind of broken one."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from zoo.data import load
from zoo.idx import IdxFormatError, read_idx


def write_gz(path, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.mark.parametrize("dataset,first_labels", [("mnist", [5, 0, 4, 1]), ("fashion-mnist", [9, 0, 0, 3])])
def test_real_training_files(data_dir, dataset, first_labels):
    split = load(dataset, "train", data_dir=data_dir, progress=False)
    assert split.images.shape == (60_000, 28, 28)
    assert split.images.dtype == np.uint8
    assert split.labels.shape == (60_000,)
    assert split.labels[:4].tolist() == first_labels
    assert np.bincount(split.labels).min() > 5000


def test_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_gz(tmp_path / "a.gz", idx_bytes(array))
    out = read_idx(tmp_path / "a.gz", ndim=3)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70000], dtype=">i4")
    write_gz(tmp_path / "a.gz", idx_bytes(array, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), [1, -2, 70000])


GOOD = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize(
    "payload,problem",
    [
        (GOOD[:-5], r"shape \(3, 28, 28\) needs 2352 data bytes, file has 2347"),
        (GOOD + b"\0", r"needs 2352 data bytes, file has 2353"),
        (b"\x08\x03" + GOOD[2:], "bad magic number 0x08030803"),
        (b"\0\0\x07\x03" + GOOD[4:], "bad magic number 0x00000703"),
        (GOOD[:2], "only 2 bytes, shorter than the 4-byte header"),
        (GOOD[:10], "header needs 16 bytes, file has 10"),
        (idx_bytes(np.zeros((3, 784), dtype=np.uint8)), "has 2 dimensions, expected 3"),
    ],
)
def test_corrupt_contents_name_file_and_problem(tmp_path, payload, problem):
    path = tmp_path / "images.gz"
    write_gz(path, payload)
    with pytest.raises(IdxFormatError, match=problem) as info:
        read_idx(path, ndim=3)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    full = gzip.compress(GOOD)
    path = tmp_path / "cut.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(IdxFormatError, match="cut.gz: gzip stream ends early"):
        read_idx(path)


def test_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(GOOD)
    with pytest.raises(IdxFormatError, match="plain.gz: not a valid gzip file"):
        read_idx(path)


def test_labels_and_images_must_agree(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    write_gz(root / "t10k-images-idx3-ubyte.gz", GOOD)
    write_gz(root / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(IdxFormatError, match="4 labels for 3 images"):
        load("mnist", "test", data_dir=tmp_path, download=False)


def test_labels_must_be_valid_classes(tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    write_gz(root / "t10k-images-idx3-ubyte.gz", GOOD)
    write_gz(root / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 1, 10], dtype=np.uint8)))
    with pytest.raises(IdxFormatError, match="label 10 out of range 0..9"):
        load("mnist", "test", data_dir=tmp_path, download=False)
