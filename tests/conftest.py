from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from zoo.data import load, resolve_data_dir


@pytest.fixture(scope="session")
def data_dir():
    """The real datasets: $ZOO_DATA_DIR (CI points it at ../shared/data) or the cache."""
    return resolve_data_dir()


@pytest.fixture(scope="session")
def test_split(data_dir):
    cache = {}

    def get(dataset: str):
        if dataset not in cache:
            cache[dataset] = load(dataset, "test", data_dir=data_dir, progress=False)
        return cache[dataset]

    return get


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """Two exported models (lenet5 on both datasets) as `python -m export` writes them;
    the checks themselves are tested in test_export.py. $ZOO_TEST_MODELS_DIR, if set, holds
    them already exported: for testing the server on a machine without this project's
    PyTorch (a GPU machine with onnxruntime-gpu, say)."""
    from export.exporter import write_unchecked

    out = tmp_path_factory.mktemp("served")
    exported = os.environ.get("ZOO_TEST_MODELS_DIR")
    for name in ("lenet5-mnist", "lenet5-fashion-mnist"):
        if exported:
            shutil.copy(Path(exported) / f"{name}.onnx", out)
        else:
            write_unchecked(name, out)
    return out


@pytest.fixture(scope="session")
def mnist_batch(test_split):
    """64 real MNIST test images: raw uint8 (64, 28, 28), normalized float32, labels."""
    from zoo.data import normalize

    split = test_split("mnist")
    return split.images[:64], normalize(split.images[:64], split.info), split.labels[:64]
