from __future__ import annotations

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
