"""Every registered architecture builds, keeps the output contract, and overfits a tiny volume."""

import numpy as np
import pytest
import torch

from pipeline_lib.errors import ConfigError
from pipeline_lib.models import available, create_model, supports_deep_supervision
from pipeline_lib.targets import affinities
from pipeline_lib.training.losses import bce

# Tiny configurations: (params, patch shape, optimizer steps, learning rate).
TINY = {
    "unet": ({"channels": [8, 16], "strides": [2], "num_res_units": 1}, (8, 16, 16), 60, 3e-3),
    "basic_unet": ({"features": [4, 4, 8, 8, 16, 4]}, (16, 32, 32), 60, 1e-2),
    "segresnet": ({"init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]}, (8, 16, 16), 50, 1e-2),
    "segresnet_ds": ({"init_filters": 4, "blocks_down": [1, 1, 1]}, (8, 16, 16), 60, 3e-3),
    "rsunet": ({"widths": [8, 16], "downsample": [[1, 2, 2]]}, (8, 16, 16), 40, 1e-2),
    # The smallest SwinUNETR: 32^3 (five 2x reductions), group norm for the 1-voxel bottleneck.
    "swin_unetr": (
        {
            "feature_size": 12,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 1, 1],
            "window_size": 4,
            "norm_name": ["group", {"num_groups": 4}],
        },
        (32, 32, 32),
        20,
        1e-2,
    ),
}
NEEDS_EINOPS = {"swin_unetr"}
OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_every_registered_architecture_has_a_tiny_test():
    assert set(available()) == set(TINY)


def _tiny_volume(shape):
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, dtype=np.int64)
    z, y, x = np.indices(shape)
    centres = rng.integers(0, shape, size=(6, 3))
    dist = np.stack([(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 for c in centres])
    labels = dist.argmin(0) + 1
    aff, mask = affinities(labels, OFFSETS)
    image = np.where(aff.min(0) > 0, 1.0, -1.0).astype(np.float32)  # boundaries dark
    return (torch.from_numpy(image)[None, None], torch.from_numpy(aff)[None], torch.from_numpy(mask)[None])


@pytest.mark.parametrize("name", sorted(TINY))
def test_architecture_overfits_tiny_volume(name):
    if name in NEEDS_EINOPS:
        pytest.importorskip("einops")
    params, shape, steps, lr = TINY[name]
    torch.manual_seed(0)
    net = create_model(name, 1, len(OFFSETS), params)
    image, target, weight = _tiny_volume(shape)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses = []
    for _ in range(steps):
        logits = net(image)
        loss = bce(logits, target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert logits.shape == (1, len(OFFSETS), *shape)
    assert min(losses[-5:]) < losses[0] / 4, f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_deep_supervision_outputs_list_in_training_tensor_in_eval():
    for name in ("rsunet", "segresnet_ds"):
        assert supports_deep_supervision(name)
        params, shape, _, _ = TINY[name]
        net = create_model(name, 1, 2, params, deep_supervision=True)
        x = torch.randn(1, 1, *shape)
        net.train()
        outputs = net(x)
        assert isinstance(outputs, list) and len(outputs) >= 2
        assert outputs[0].shape == (1, 2, *shape)
        assert all(o.shape[2] <= shape[0] and o.shape[3] < shape[1] for o in outputs[1:])
        net.eval()
        assert net(x).shape == (1, 2, *shape)


def test_rsunet_is_anisotropic_by_default():
    net = create_model("rsunet", 1, 1, {})
    assert net.shape_factor() == (2, 8, 8)
    assert net(torch.randn(1, 1, 2, 8, 8)).shape == (1, 1, 2, 8, 8)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 1, 3, 8, 8))


def test_registry_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'rsunet'"):
        create_model("rsunte", 1, 1, {})
    with pytest.raises(ConfigError, match="does not support deep supervision; these do: rsunet, segresnet_ds"):
        create_model("unet", 1, 1, {}, deep_supervision=True)
    with pytest.raises(ConfigError, match="bad architecture_params"):
        create_model("rsunet", 1, 1, {"width": 3})
