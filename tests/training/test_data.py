"""Patch sampling: rejection sampling, shape errors, targets from the augmented labels."""

import numpy as np
import pytest

from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import create_array
from pipeline_lib.training.data import FixedPatches, PatchSpec, RandomPatches
from tests.training.helpers import model_settings

OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


def _half_empty_store(path):
    labels = np.zeros((8, 64, 64), dtype=np.uint32)
    labels[:, :, 40:] = 1 + np.arange(8 * 64 * 24).reshape(8, 64, 24) % 150  # labelled only at x >= 40
    image = (labels % 200).astype(np.uint8)
    for name, array in (("image", image), ("labels", labels)):
        create_array(path, name, array.shape, array.dtype, array.shape, (1, 1, 1))[...] = array
    return path


def test_rejection_sampling_reaches_min_foreground(tmp_path):
    store = _half_empty_store(tmp_path / "v.zarr")
    spec = PatchSpec((4, 16, 16), OFFSETS)
    none = model_settings(augment={"flip": {"p": 0}, "transpose": {"p": 0}})
    plain = iter(RandomPatches([store], spec, 0, none.augment, none.sampling))
    picky_settings = model_settings(sampling={"min_foreground": 0.5, "max_attempts": 50})
    picky = iter(RandomPatches([store], spec, 0, none.augment, picky_settings.sampling))
    # The image is labels % 200 (never 0 where labelled), so labelled voxels are non-zero pixels.
    plain_fractions = [float((next(plain)["image"] > 0).float().mean()) for _ in range(30)]
    assert min(plain_fractions) < 0.5
    for _ in range(20):
        assert (next(picky)["image"] > 0).float().mean() >= 0.5


def test_patch_larger_than_volume_names_both_shapes(tmp_path):
    store = _half_empty_store(tmp_path / "v.zarr")
    settings = model_settings()
    with pytest.raises(UserError, match=r"patch shape \(16, 16, 16\) is larger than the volume \(8, 64, 64\)"):
        RandomPatches([store], PatchSpec((16, 16, 16), OFFSETS), 0, settings.augment, settings.sampling)


def test_samples_have_consistent_targets_and_weights(stores):
    settings = model_settings()
    spec = PatchSpec((8, 16, 16), OFFSETS, ("affinity", "boundary", "foreground"))
    sample = next(iter(RandomPatches([stores[0]], spec, 0, settings.augment, settings.sampling)))
    assert sample["image"].shape == (1, 8, 16, 16)
    assert sample["target"].shape == sample["weight"].shape == (5, 8, 16, 16)
    assert set(sample["target"].unique().tolist()) <= {0.0, 1.0}
    val = FixedPatches([stores[1]], spec, 3, seed=1)
    assert len(val) == 3 and val[0]["target"].shape == (5, 8, 16, 16)


def test_volume_weights_choose_volumes(tmp_path):
    a = _half_empty_store(tmp_path / "a.zarr")
    b = tmp_path / "b.zarr"
    for name, dtype in (("image", np.uint8), ("labels", np.uint32)):
        create_array(b, name, (8, 64, 64), dtype, (8, 64, 64), (1, 1, 1))[...] = 0  # all zero
    settings = model_settings(augment={"flip": {"p": 0}, "transpose": {"p": 0}})
    spec = PatchSpec((4, 16, 16), OFFSETS)
    only_b = iter(RandomPatches([a, b], spec, 0, settings.augment, settings.sampling, volume_weights=[0, 1]))
    assert all(next(only_b)["image"].max() == 0 for _ in range(10))
    with pytest.raises(UserError, match="one non-negative number per training volume"):
        RandomPatches([a, b], spec, 0, settings.augment, settings.sampling, volume_weights=[1])


def _stream(store, workers: int, start: int, n: int) -> list:
    """The first ``n`` training batches (image tensors) from batch ``start`` on, via a DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from pipeline_lib.threads import limit_worker_threads

    settings = model_settings(augment={"flip": {"p": 0.5}, "noise": {"p": 0.5}})
    patches = RandomPatches(
        [store], PatchSpec((8, 16, 16), OFFSETS), 7, settings.augment, settings.sampling, batch_size=2
    )
    patches.start_batch = start
    loader = DataLoader(patches, batch_size=2, num_workers=workers, worker_init_fn=limit_worker_threads)
    batches = []
    for batch in loader:
        batches.append(torch.cat([batch["image"].flatten(), batch["target"].flatten()]))
        if len(batches) == n:
            return batches
    raise AssertionError("the stream ended")


def test_patch_stream_is_the_same_for_any_number_of_workers_and_resumes_at_any_batch(stores):
    """Issue 21, item 5: the stream is a function of the seed and the batch index."""
    serial = _stream(stores[0], 0, 0, 6)
    assert not any(serial[0].equal(b) for b in serial[1:])
    for got, expected in zip(_stream(stores[0], 2, 0, 6), serial, strict=True):
        assert got.equal(expected)
    for got, expected in zip(_stream(stores[0], 0, 3, 3), serial[3:], strict=True):
        assert got.equal(expected)


def test_data_module_serves_the_stream_and_fixed_validation_patches(stores):
    """PatchDataModule: its training loader gives RandomPatches' batches (from a resumed batch on
    too), its validation loader ``val_batches`` batches of FixedPatches with seed + 1."""
    from pipeline_lib.training.data import PatchDataModule

    settings = model_settings(batch_size=2, val_batches=3, seed=7, augment={"flip": {"p": 0.5}})
    spec = PatchSpec((8, 16, 16), OFFSETS)
    data = PatchDataModule([stores[0]], [stores[1]], spec, settings, settings.augment, workers=0)
    data.start_at(2)
    data.setup("fit")
    data.setup("fit")  # a second call keeps the datasets
    reference = RandomPatches([stores[0]], spec, 7, settings.augment, settings.sampling, batch_size=2)
    reference.start_batch = 2
    expected = iter(reference)
    batch = next(iter(data.train_dataloader()))
    for i in range(2):
        assert batch["image"][i].equal(next(expected)["image"])
    val = list(data.val_dataloader())
    fixed = FixedPatches([stores[1]], spec, 6, seed=8)
    assert [len(b["image"]) for b in val] == [2, 2, 2]
    assert val[2]["image"][1].equal(fixed[5]["image"])


def test_data_module_without_validation_data(stores):
    from pipeline_lib.training.data import PatchDataModule

    settings = model_settings()
    data = PatchDataModule([stores[0]], [], PatchSpec((8, 16, 16), OFFSETS), settings, settings.augment, 0)
    data.setup("fit")
    assert not data.has_validation and data.val is None and data.val_dataloader() == []
    with pytest.raises(UserError, match="no training volumes"):
        PatchDataModule([], [stores[1]], PatchSpec((8, 16, 16), OFFSETS), settings, settings.augment, 0).setup("fit")
