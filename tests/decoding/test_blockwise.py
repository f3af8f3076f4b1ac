"""Blockwise decoding with overlap stitching (seeded watershed) vs whole-volume decoding.

Measured on this synthetic volume (32x64x64, cells ~14 voxels across, long-range offsets,
8 blocks of 16x32x32, default halo [4, 16, 16], min_size 20), ARAND between the blockwise
and the whole-volume seeded watershed: 0.0001 at noise 0.1, 0.0005 at noise 0.35 (0.048 /
0.049 to the ground truth, whole / blockwise). The bounds below are these numbers with
margin; blockwise results must also stay within 0.05 ARAND of whole-volume decoding's
distance to the ground truth. waterz and mutex watershed are decoded through one region
graph instead (``test_graph_decode.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decoding_helpers import LONG_OFFSETS, NN_OFFSETS, decode_settings, read_segmentation, write_affinities

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding import decode_blocks, decode_volume, prepare_decoding
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.decoding.stitching import agreeing_pairs, halo_slabs
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.geometry import BlockGrid, Box
from pipeline_lib.io.affinities import as_float
from pipeline_lib.io.volumes import partial_path
from pipeline_lib.targets import affinities

BOUNDS = {  # (noise, method): (max ARAND blockwise vs whole, max extra ARAND vs ground truth)
    (0.1, "seeded_watershed"): (0.005, 0.005),
    (0.35, "seeded_watershed"): (0.02, 0.05),
}


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return generate((32, 64, 64), seed=5, cell_size=14).labels


@pytest.mark.parametrize(("noise", "method"), list(BOUNDS))
def test_overlap_stitching_deviation_is_bounded(tmp_path, volume: np.ndarray, noise: float, method: str) -> None:
    affs, _ = affinities(volume, LONG_OFFSETS)
    rng = np.random.default_rng(0)
    stored = np.round(np.clip(affs + rng.normal(0.0, noise, affs.shape), 0, 1) * 255).astype(np.uint8)
    write_affinities(tmp_path / "affs.zarr", as_float(stored), LONG_OFFSETS, (16, 32, 32), dtype="uint8")
    decoder = decoder_settings({"method": method, "min_size": 20})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((16, 32, 32)))
    blockwise = read_segmentation(tmp_path / "seg.zarr")
    whole = decode_array(as_float(stored), LONG_OFFSETS, decoder)
    deviation = evaluate_arrays(blockwise, whole)
    to_gt_whole, to_gt_blockwise = evaluate_arrays(whole, volume), evaluate_arrays(blockwise, volume)
    print(
        f"{method} noise {noise}: deviation {deviation.to_dict()}, "
        f"gt {to_gt_whole.arand:.4f} / {to_gt_blockwise.arand:.4f}"
    )
    max_deviation, max_extra = BOUNDS[(noise, method)]
    assert deviation.arand <= max_deviation
    assert to_gt_blockwise.arand <= to_gt_whole.arand + max_extra


def test_agreeing_pairs_is_mutual() -> None:
    p = np.array([1, 1, 1, 1, 1, 1, 2, 2])  # p=1 spans q=5 and q=6; p=2 lies inside q=6
    q = np.array([5, 5, 5, 5, 6, 6, 6, 6])
    pairs = {tuple(row) for row in agreeing_pairs(p, q, 0.5).tolist()}
    assert pairs == {(1, 5)}  # 5 is mostly 1 and 1 mostly 5; 6 is half 1, half 2: no one joins it
    assert len(agreeing_pairs(np.zeros(4, int), q[:4], 0.5)) == 0


def test_halo_slabs_lie_beside_the_block_faces() -> None:
    grid = BlockGrid((20, 20, 20), (10, 10, 10))
    block = grid.block(7)  # index (1, 1, 1): clipped at the upper borders
    slabs = halo_slabs(block, grid.with_halo(7, (2, 3, 3)))
    assert set(slabs) == {"lo0", "lo1", "lo2"}
    assert slabs["lo1"] == Box((10, 7, 10), (20, 10, 20))
    slabs = halo_slabs(grid.block(0), grid.with_halo(0, (2, 3, 3)))
    assert slabs == {
        "hi0": Box((10, 0, 0), (12, 10, 10)),
        "hi1": Box((0, 10, 0), (10, 13, 10)),
        "hi2": Box((0, 0, 10), (10, 10, 13)),
    }


def test_a_partial_store_from_other_affinities_at_the_same_path_is_replaced(tmp_path: Path) -> None:
    from pipeline_lib.io.volumes import set_store_attrs

    rng = np.random.default_rng(3)
    first = np.where(rng.random((3, 16, 16, 16)) < 0.5, 0.9, 0.1).astype(np.float32)
    affs = write_affinities(tmp_path / "affs.zarr", first, NN_OFFSETS, (8, 8, 8), "uint8")
    set_store_attrs(affs, {"provenance": {"created": "first prediction"}})
    decoder = decoder_settings({"method": "connected_components"})
    settings = decode_settings((8, 8, 8))
    out = tmp_path / "seg.zarr"
    prepare_decoding(affs, partial_path(out), decoder, settings)
    decode_blocks(affs, partial_path(out), range(8), decoder)  # interrupted after decoding

    # The affinities are predicted again, at the same path: the blocks decoded from the old
    # ones must not be reused.
    write_affinities(affs, np.full_like(first, 0.9), NN_OFFSETS, (8, 8, 8), "uint8")
    set_store_attrs(affs, {"provenance": {"created": "second prediction"}})
    decode_volume(affs, out, decoder, settings)
    assert np.unique(read_segmentation(out)).tolist() == [1]  # one object filling the volume


@pytest.mark.parametrize("method", ["connected_components", "seeded_watershed", "waterz", "mutex_watershed"])
def test_decoders_are_given_only_their_channels(tmp_path, volume, monkeypatch, method: str) -> None:
    """Channels stored out of z, y, x order among long-range ones: a nearest-neighbour decoder
    gets those three (in store order, with their offsets), blockwise and on a whole array, and
    decodes exactly as on a store of them alone; mutex watershed gets all six."""
    from pipeline_lib.decoding import registry

    order = [5, 3, 1, 4, 0, 2]  # long x, long z, nn y, long y, nn z, nn x
    offsets = [LONG_OFFSETS[c] for c in order]
    affs, _ = affinities(volume, LONG_OFFSETS)
    stored = np.round(np.clip(affs + np.random.default_rng(1).normal(0, 0.2, affs.shape), 0, 1) * 255) / 255
    write_affinities(tmp_path / "six.zarr", stored[order], offsets, (16, 32, 32), dtype="uint8")
    seen: list[list[list[int]]] = []
    original = registry.get_decoder(method)

    def spy(affinities_in, offsets_in, settings):  # type: ignore[no-untyped-def]
        assert len(affinities_in) == len(offsets_in)
        seen.append([list(o) for o in offsets_in])
        return original.decode(affinities_in, offsets_in, settings)

    monkeypatch.setitem(registry._DECODERS, method, registry.Decoder(spy, original.stitch, None, original.reads))
    decoder = decoder_settings({"method": method})
    settings = decode_settings((16, 32, 32))
    decode_volume(tmp_path / "six.zarr", tmp_path / "six_seg.zarr", decoder, settings)
    decode_array(stored[order], offsets, decoder)
    expected = [[0, -1, 0], [-1, 0, 0], [0, 0, -1]] if original.reads == "nearest" else offsets
    blocks = (
        8 if original.stitch == "overlap" else 0
    )  # CC labels blocks with label_block, graph decoders make fragments
    assert seen == [expected] * (blocks + 1)  # the blocks, then the whole array
    if original.reads == "nearest":
        write_affinities(tmp_path / "three.zarr", stored[:3], NN_OFFSETS, (16, 32, 32), dtype="uint8")
        decode_volume(tmp_path / "three.zarr", tmp_path / "three_seg.zarr", decoder, settings)
        six, three = read_segmentation(tmp_path / "six_seg.zarr"), read_segmentation(tmp_path / "three_seg.zarr")
        assert np.array_equal(six, three)
