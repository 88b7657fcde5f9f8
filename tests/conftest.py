from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from zoo.data import load, resolve_data_dir

# What a test asks for when it reads MNIST or Fashion-MNIST; a test that reads them
# otherwise (through a command line it runs) is marked needs_data.
DATA_FIXTURES = {"data_dir", "test_split", "mnist_batch"}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data: reads the datasets without the data_dir fixture")


def missing_data() -> str | None:
    """Why the datasets cannot be had (not in the data directory, in either layout, and no
    mirror answers), or None. Missing files are downloaded here, once, as the tests would."""
    from zoo.data import ensure_file
    from zoo.datasets import DATASETS
    from zoo.download import DownloadError

    root = resolve_data_dir()
    try:
        for info in DATASETS.values():
            for name in info.files:
                ensure_file(info, name, root, progress=False)
    except DownloadError as e:
        return f"the tests need MNIST and Fashion-MNIST: {e}; or select only tests that need no data"
    return None


def pytest_collection_modifyitems(session, config, items):
    """One message up front, instead of every test that needs the data failing with its
    own long traceback, when the data is neither here nor downloadable (offline)."""
    if any(DATA_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("needs_data")
           for item in items):
        problem = missing_data()
        if problem:
            pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


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
