"""Fixtures of the training tests (helpers live in :mod:`tests.training.helpers`)."""

from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.data.synthetic import generate
from tests.training.helpers import write_store


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("volumes")
    return write_store(root / "train.zarr", seed=1), write_store(root / "val.zarr", seed=2)


@pytest.fixture
def labels_volume() -> np.ndarray:
    return generate((16, 48, 48), seed=3, cell_size=8.0).labels
