"""Helpers: a tiny assembled volume and model settings built through the schema."""

import copy
from pathlib import Path
from typing import Any

from pipeline_lib.config import ModelSettings, build
from pipeline_lib.config.schema import validate_with_defaults
from pipeline_lib.data.synthetic import generate
from pipeline_lib.io.volumes import create_array

TINY_MODEL: dict[str, Any] = {
    "architecture": "unet",
    "architecture_params": {"channels": [4, 8], "strides": [2], "num_res_units": 1},
    "patch_shape": [8, 16, 16],
    "batch_size": 1,
    "max_steps": 6,
    "val_every_n_steps": 2,
    "val_batches": 1,
}


def model_settings(**overrides: Any) -> ModelSettings:
    """Settings of a tiny model: schema defaults, TINY_MODEL, then ``overrides``."""
    entry = {**copy.deepcopy(TINY_MODEL), **overrides}
    config = {"datasets": ["x"], "models": {"m": entry}, "decoders": {"d": {"method": "connected_components"}}}
    data = validate_with_defaults(config, "config", "config")
    return build(ModelSettings, data["models"]["m"])


def write_store(path: Path, shape=(16, 48, 48), seed: int = 0) -> Path:
    volume = generate(shape, seed=seed, cell_size=8.0)
    for name, array in (("image", volume.image), ("labels", volume.labels)):
        out = create_array(path, name, array.shape, array.dtype, array.shape, (1.0, 1.0, 1.0))
        out[...] = array
    return path
