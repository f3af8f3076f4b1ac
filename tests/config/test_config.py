"""Config validation: defaults filled from the schema, and one clear error per user mistake."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from pipeline_lib.config import load_config, load_datasets
from pipeline_lib.errors import ConfigError

NN = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


def test_defaults_come_from_the_schema(tiny_run, repo_root):
    _, config = tiny_run
    settings = load_config(config)
    schema = yaml.safe_load((repo_root / "pipeline_lib/schemas/config.schema.yaml").read_text())
    model_defaults = schema["$defs"]["model"]["properties"]
    assert settings.models["tiny"].learning_rate == model_defaults["learning_rate"]["default"]
    assert settings.models["tiny"].patch_shape == (16, 32, 32)  # given, as a tuple
    assert settings.predict.overlap == schema["properties"]["predict"]["properties"]["overlap"]["default"]
    assert settings.resources["train"].gpus == 1  # per-rule default
    assert settings.datasets_with_role("test") == ["tiny_test"]


def test_demo_config_is_valid(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    config = yaml.safe_load((repo_root / "config/config.yaml").read_text())
    settings = load_config(config)
    assert set(settings.datasets) == {"demo_train", "demo_val", "demo_test"}


def _add_ensemble(config, name, **member_changes):
    """A second model (``tiny`` with ``member_changes``) and an ensemble ``name`` of both."""
    config["models"]["tiny2"] = {**config["models"]["tiny"], **member_changes}
    config["ensembles"] = {name: {"models": ["tiny", "tiny2"]}}


def test_an_ensemble_predicts_with_its_members_checkpoints(tiny_run):
    _, config = tiny_run
    _add_ensemble(config, "both")
    settings = load_config(config)
    assert settings.predictors == ["tiny", "tiny2", "both"]
    assert settings.members("both") == ("tiny", "tiny2")
    assert settings.members("tiny2") == ("tiny2",)
    assert settings.predicting_model("both") == settings.models["tiny"]
    with pytest.raises(KeyError, match="neither a model nor an ensemble"):
        settings.members("nope")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["models"]["tiny"].update(learning_rat=0.1), "learning_rat"),
        (lambda c: c["models"]["tiny"].update(learning_rate=-1), "models.tiny.learning_rate"),
        (lambda c: c["decoders"]["cc"].update(threshold=1.5), "decoders.cc.threshold"),
        (lambda c: c.pop("models"), "'models' is a required property"),
        (lambda c: c.update(datasets=["tiny_train", "nope"]), "unknown dataset 'nope'"),
        (lambda c: c.update(datasets=["tiny_test"]), "role 'train'"),
        (lambda c: c["predict"].update(block_shape=[20, 32, 32]), "predict.block_shape"),
        (lambda c: c.update(datasets_file="missing.yaml"), "missing.yaml: file not found"),
        (lambda c: c.update(ensembles={"e": {"models": ["tiny"]}}), "ensembles.e.models"),
        (lambda c: c.update(ensembles={"e": {"models": ["tiny", "nope"]}}), "unknown model(s) ['nope']"),
        (lambda c: c.update(ensembles={"tiny": {"models": ["tiny", "tiny"]}}), "ensembles.tiny.models"),
        (lambda c: _add_ensemble(c, "e", patch_shape=[8, 32, 32]), "members must share 'patch_shape'"),
        (lambda c: _add_ensemble(c, "e", offsets=[[0, 0, -1], [0, -1, 0], [-1, 0, 0]]), "members must share 'offsets'"),
        (lambda c: _add_ensemble(c, "tiny2"), "'tiny2' is also a model name"),
        (
            lambda c: c["models"]["tiny"].update(offsets=[[-1, 0, 0], [0, -1, 0], [0, 0, -2]]),
            "models.tiny.offsets': must include the nearest-neighbour offsets",
        ),
        (
            lambda c: (
                c["models"]["tiny"].update(offsets=[*NN, [0, -3, 0]]),
                c["predict"].update(tta={"transpose": True}),
            ),
            "predict.tta.transpose': offset [0, -3, 0] has no y–x partner [0, 0, -3]",
        ),
        (
            lambda c: (
                c["models"]["tiny"].update(offsets=[*NN, [0, -1, -1]]),
                c["predict"].update(tta={"flip": ["y"]}),
            ),
            "predict.tta.flip': diagonal offset [0, -1, -1] cannot be flipped along y alone",
        ),
        (
            lambda c: (
                c["models"]["tiny"].update(offsets=[*NN, [0, -3, -3]]),
                c["decoders"].update(mws={"method": "mutex_watershed"}),
            ),
            "models.tiny.offsets': diagonal offsets [[0, -3, -3]] cannot be decoded by decoder 'mws'",
        ),
    ],
)
def test_user_mistakes_name_the_key(tiny_run, edit, message):
    _, config = tiny_run
    config = copy.deepcopy(config)
    edit(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config)


def test_missing_source_file_is_named(tmp_path):
    datasets = {
        "datasets": {
            "real": {
                "image": {"format": "hdf5", "path": "em.h5", "key": "raw"},
                "labels": {"format": "hdf5", "path": "gt.h5", "key": "raw"},
                "voxel_size": [40, 4, 4],
                "roles": ["train", "test"],
            }
        }
    }
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(datasets))
    config = {
        "datasets_file": str(path),
        "datasets": ["real"],
        "models": {"m": {"architecture": "unet"}},
        "decoders": {"cc": {"method": "connected_components"}},
    }
    with pytest.raises(ConfigError, match=r"dataset 'real' image: file not found: .*em\.h5"):
        load_config(config)
    # Paths are relative to the datasets file.
    assert load_datasets(path)["real"].image["path"] == str(tmp_path / "em.h5")


def test_dataset_schema_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "d": {"synthetic": {"shape": [8, 8, 8], "seed": 1}, "voxel_size": [1, 1], "roles": ["train"]}
                }
            }
        )
    )
    with pytest.raises(ConfigError, match=r"datasets.yaml: key 'datasets.d.voxel_size'"):
        load_datasets(path)
    path.write_text("datasets: {d: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_datasets(path)
