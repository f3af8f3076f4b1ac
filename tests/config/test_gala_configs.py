"""config/gala.yaml and config/gala_gpu.yaml (given after it) as Snakemake merges them."""

from __future__ import annotations

from snakemake.utils import update_config

from pipeline_lib.config import load_config, read_yaml
from tests.conftest import REPO


def gala_config(*extra: str) -> dict:
    config = read_yaml(REPO / "config" / "gala.yaml")
    for name in extra:
        update_config(config, read_yaml(REPO / "config" / name))
    config["datasets_file"] = str(REPO / config["datasets_file"])
    return config


def test_the_cpu_recipe_holds_out_validation_from_the_train_crop():
    settings = load_config(gala_config(), check_files=False)
    roles = {name: spec.roles for name, spec in settings.datasets.items()}
    assert roles["gala_train_part"] == ("train",) and roles["gala_val_part"] == ("val",)
    assert "train" not in roles["gala_test"] and "val" not in roles["gala_test"]
    train, val = settings.datasets["gala_train_part"].roi, settings.datasets["gala_val_part"].roi
    assert train.begin[2] + train.shape[2] <= val.begin[2]  # disjoint x ranges of the one crop
    model = settings.models["gala"]
    assert all(p <= s for p, s in zip(model.patch_shape, val.shape, strict=True))  # validation patches fit


def test_the_front_split_holds_out_the_other_end_of_the_train_crop():
    """The ablation row "validation at the front": the same crop, train and val swapped ends."""
    config = gala_config()
    config["datasets"] = ["gala_train_back", "gala_val_front", "gala_test"]
    datasets = load_config(config, check_files=False).datasets
    train, val = datasets["gala_train_back"].roi, datasets["gala_val_front"].roi
    assert (val.begin[2], val.shape[2], train.begin[2], train.shape[2]) == (0, 64, 64, 136)
    assert datasets["gala_train_back"].roles == ("train",) and datasets["gala_val_front"].roles == ("val",)


def test_the_gpu_recipe_changes_only_what_a_gpu_changes():
    cpu = load_config(gala_config(), check_files=False).models["gala"]
    gpu = load_config(gala_config("gala_gpu.yaml"), check_files=False).models["gala"]
    assert (gpu.batch_size, gpu.precision, gpu.max_minutes) == (16, "bf16-mixed", 10)
    assert gpu.network == cpu.network and gpu.patch_shape == cpu.patch_shape
    assert gpu.augment.flip == cpu.augment.flip and gpu.boundary_weight == cpu.boundary_weight
    assert gpu.augment.transpose == cpu.augment.transpose and cpu.augment.transpose.axes == "zyx"
