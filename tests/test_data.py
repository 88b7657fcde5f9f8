"""Dataset facts: normalization constants, class names, directory resolution."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.data import DATA_DIR_ENV, load, normalize, pixel_stats, resolve_data_dir
from zoo.datasets import get_dataset_info, list_datasets


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_normalization_constants_come_from_the_training_set(data_dir, dataset):
    info = get_dataset_info(dataset)
    mean, std = pixel_stats(load(dataset, "train", data_dir=data_dir, progress=False).images)
    assert info.mean == pytest.approx(mean, abs=5e-5)
    assert info.std == pytest.approx(std, abs=5e-5)


def test_normalized_training_set_is_standardized(data_dir):
    split = load("mnist", "train", data_dir=data_dir, progress=False)
    x = normalize(split.images[:20_000], split.info)
    assert x.shape == (20_000, 1, 28, 28)
    assert x.dtype == np.float32
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01


def test_class_names():
    assert list_datasets() == ["fashion-mnist", "mnist"]
    assert get_dataset_info("mnist").classes == tuple("0123456789")
    assert get_dataset_info("fashion-mnist").classes == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; valid names: fashion-mnist, mnist"):
        get_dataset_info("cifar10")


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load("mnist", "val")


def test_data_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "from-env"
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "cnn-zoo" / "data"


def test_missing_file_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz is missing"):
        load("mnist", "test", data_dir=tmp_path, download=False)


@pytest.mark.parametrize("dataset,folder,packed", [("mnist", "MNIST", False), ("fashion-mnist", "FashionMNIST", True)])
def test_torchvision_layout_is_found(data_dir, tmp_path, dataset, folder, packed):
    """A torchvision user's download, <root>/MNIST/raw/ and <root>/FashionMNIST/raw/, with the
    files unpacked (as torchvision leaves them) or still .gz, reads as ours does."""
    import gzip
    import shutil

    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if packed:
            shutil.copy(data_dir / dataset / name, raw / name)
        else:
            (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress((data_dir / dataset / name).read_bytes()))
    ours = load(dataset, "test", data_dir=data_dir, progress=False)
    theirs = load(dataset, "test", data_dir=tmp_path, download=False)
    assert theirs.images.shape == (10_000, 28, 28) and theirs.images.dtype == np.uint8
    np.testing.assert_array_equal(theirs.images, ours.images)
    np.testing.assert_array_equal(theirs.labels, ours.labels)
    with pytest.raises(FileNotFoundError, match=f"nor is it in torchvision's layout .*{folder}/raw"):
        load(dataset, "train", data_dir=tmp_path, download=False)
