"""AffinityModule: typed settings rebuilt from its saved hyperparameters, as inference rebuilds them."""

import pytest
import torch

from pipeline_lib.config import build
from pipeline_lib.config.settings import NetworkSettings
from pipeline_lib.inference.predictor import TrainedNetwork
from pipeline_lib.training.train import build_module
from tests.training.helpers import model_settings


def test_hyperparameters_rebuild_the_typed_settings():
    settings = model_settings(
        targets=[{"type": "affinity"}, {"type": "boundary", "weight": 0.5, "losses": [{"name": "dice"}]}],
        architecture="rsunet",
        architecture_params={"widths": [8, 16], "downsample": [[1, 2, 2]]},
        deep_supervision={"enabled": True},
    )
    module = build_module(settings)
    saved = dict(module.hparams)  # what a checkpoint holds: plain data
    assert isinstance(saved["targets"][1], dict)
    network = build(NetworkSettings, saved)
    assert network == module.network == settings.network
    assert network.targets == settings.targets and network.offsets == settings.offsets
    assert network.deep_supervision == settings.deep_supervision
    assert module.schedule == settings.lr_schedule and module.optimizer_settings == settings.optimizer
    assert [(h.name, h.start, h.stop, h.weight) for h in module.heads] == [
        ("affinity", 0, len(settings.offsets), 1.0),
        ("boundary", len(settings.offsets), len(settings.offsets) + 1, 0.5),
    ]
    assert TrainedNetwork(saved).network == network


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_optimizer_from_typed_settings(name, kind):
    settings = model_settings(learning_rate=0.02, optimizer={"name": name, "weight_decay": 0.001, "momentum": 0.8})
    config = build_module(settings).configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, kind)
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == pytest.approx(0.001)
    assert group["initial_lr"] == pytest.approx(0.02)
    if name == "sgd":
        assert group["momentum"] == pytest.approx(0.8)


def test_plateau_schedule_steps_with_validation():
    settings = model_settings(lr_schedule={"name": "plateau", "gamma": 0.3, "patience": 4}, val_every_n_steps=5)
    scheduler = build_module(settings).configure_optimizers()["lr_scheduler"]
    assert scheduler["frequency"] == 5 and scheduler["monitor"] == "val/loss"
    assert scheduler["scheduler"].factor == pytest.approx(0.3) and scheduler["scheduler"].patience == 4
