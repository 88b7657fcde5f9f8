"""The downloader against a real local HTTP server serving copies of the official files."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

from zoo.data import MIRRORS_ENV, load
from zoo.datasets import FILES, get_dataset_info
from zoo.download import DownloadError, download_file, md5sum

TEST_FILES = FILES["test"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path, data_dir):
    """An http.server on 127.0.0.1 (port 0) laid out as a ZOO_DATA_MIRRORS root: mnist/ with
    MNIST's test files and a corrupted copy of the training labels (same name, one byte
    flipped), fashion-mnist/ with Fashion-MNIST's test files (the same file names)."""
    root = tmp_path / "mirror"
    mnist, fashion = root / "mnist", root / "fashion-mnist"
    mnist.mkdir(parents=True)
    fashion.mkdir()
    for name in TEST_FILES:
        shutil.copy(data_dir / "mnist" / name, mnist / name)
        shutil.copy(data_dir / "fashion-mnist" / name, fashion / name)
    shutil.copy(data_dir / "mnist" / "train-images-idx3-ubyte.gz", mnist)
    corrupt = bytearray((data_dir / "mnist" / "train-labels-idx1-ubyte.gz").read_bytes())
    corrupt[100] ^= 0xFF
    (mnist / "train-labels-idx1-ubyte.gz").write_bytes(bytes(corrupt))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_md5_and_writes_the_file(mirror, tmp_path):
    info = get_dataset_info("mnist")
    name = "t10k-labels-idx1-ubyte.gz"
    dest = tmp_path / "out"
    path = download_file(name, info.files[name], dest, (mirror + "mnist/",), progress=False)
    assert path == dest / name
    assert md5sum(path) == info.files[name]
    assert sorted(p.name for p in dest.iterdir()) == [name]


def test_checksum_mismatch_keeps_nothing(mirror, tmp_path):
    info = get_dataset_info("mnist")
    name = "train-labels-idx1-ubyte.gz"
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match=f"{name}: MD5 [0-9a-f]{{32}} does not match the expected {info.files[name]}"):
        download_file(name, info.files[name], dest, (mirror + "mnist/",), progress=False)
    assert list(dest.iterdir()) == []  # no partial or temp file left behind


def test_falls_back_to_the_next_mirror(mirror, tmp_path):
    info = get_dataset_info("mnist")
    name = "t10k-labels-idx1-ubyte.gz"
    broken = mirror + "missing/"  # answers 404
    path = download_file(name, info.files[name], tmp_path, (broken, mirror + "mnist/"), progress=False)
    assert md5sum(path) == info.files[name]


def test_all_mirrors_failing_names_each(mirror, tmp_path):
    with pytest.raises(DownloadError, match=r"could not download nope.gz: .*a/nope.gz: HTTP 404.*; .*b/nope.gz: HTTP 404"):
        download_file("nope.gz", "0" * 32, tmp_path, (mirror + "a/", mirror + "b/"), progress=False)


def test_load_downloads_missing_files(mirror, tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv(MIRRORS_ENV, mirror)
    split = load("mnist", "test", data_dir=tmp_path, progress=False)
    assert split.images.shape == (10_000, 28, 28)
    reference = load("mnist", "test", data_dir=data_dir, progress=False)
    np.testing.assert_array_equal(split.images, reference.images)
    np.testing.assert_array_equal(split.labels, reference.labels)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(TEST_FILES)


def test_load_with_corrupt_download_fails_cleanly(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRRORS_ENV, mirror)
    with pytest.raises(DownloadError, match="does not match"):
        load("mnist", "train", data_dir=tmp_path, progress=False)
    # The intact images were kept; of the corrupt labels nothing, not even a temp file.
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == ["train-images-idx3-ubyte.gz"]


@pytest.mark.parametrize("form", ["root", "template"])
def test_one_mirror_serves_both_datasets(mirror, tmp_path, monkeypatch, data_dir, form):
    monkeypatch.setenv(MIRRORS_ENV, mirror if form == "root" else mirror + "{dataset}/")
    for dataset in ("mnist", "fashion-mnist"):
        split = load(dataset, "test", data_dir=tmp_path, progress=False)
        reference = load(dataset, "test", data_dir=data_dir, progress=False)
        np.testing.assert_array_equal(split.images, reference.images)
        assert sorted(p.name for p in (tmp_path / dataset).iterdir()) == sorted(TEST_FILES)


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: as offline as a test can be
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setenv(MIRRORS_ENV, dead)
    with pytest.raises(DownloadError) as caught:
        load("fashion-mnist", "test", data_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert message.startswith(f"could not download t10k-images-idx3-ubyte.gz: {dead}fashion-mnist/t10k-images")
    for hint in (f"put the official .gz files in {tmp_path / 'fashion-mnist'}/", "--data-dir", "ZOO_DATA_DIR",
                 "ZOO_DATA_MIRRORS (a URL with fashion-mnist/ below it)"):
        assert hint in message
