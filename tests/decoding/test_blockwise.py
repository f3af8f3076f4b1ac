"""Blockwise decoding: partial stores, the channels each decoder is given.

Blockwise vs whole-volume accuracy of the graph decoders (waterz, mutex watershed, seeded
watershed) is tested on real shapes in ``test_graph_decode.py``; connected components are
exact (``test_connected_components.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decoding_helpers import LONG_OFFSETS, NN_OFFSETS, decode_settings, read_segmentation, write_affinities

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding import decode_blocks, decode_volume, prepare_decoding
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.io.volumes import partial_path
from pipeline_lib.targets import affinities


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return generate((32, 64, 64), seed=5, cell_size=14).labels


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
    assert seen == [expected]  # the whole array only: CC labels blocks with label_block, graph decoders make fragments
    if original.reads == "nearest":
        write_affinities(tmp_path / "three.zarr", stored[:3], NN_OFFSETS, (16, 32, 32), dtype="uint8")
        decode_volume(tmp_path / "three.zarr", tmp_path / "three_seg.zarr", decoder, settings)
        six, three = read_segmentation(tmp_path / "six_seg.zarr"), read_segmentation(tmp_path / "three_seg.zarr")
        assert np.array_equal(six, three)
