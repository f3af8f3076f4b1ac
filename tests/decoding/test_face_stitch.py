"""The streamed connected-components stitch writes exactly the in-memory stitch's table."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from decoding_helpers import NN_OFFSETS, decode_settings, write_affinities

from pipeline_lib.blockstore import BlockStore
from pipeline_lib.decoding import decode_blocks, prepare_decoding
from pipeline_lib.decoding.face_stitch import stream_cc_table
from pipeline_lib.decoding.partial_store import DECODED
from pipeline_lib.decoding.registry import decoder_settings
from pipeline_lib.decoding.relabel import _final_table, records
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import partial_path


@pytest.mark.parametrize(("seed", "min_size", "block"), [(0, 0, (4, 8, 8)), (1, 4, (4, 8, 8)), (2, 25, (8, 4, 8))])
def test_streamed_table_equals_the_in_memory_table(tmp_path: Path, seed: int, min_size: int, block) -> None:
    rng = np.random.default_rng(seed)
    affs = np.where(rng.random((3, 12, 16, 24)) < 0.4, 0.9, 0.1).astype(np.float32)  # percolating clusters
    write_affinities(tmp_path / "affs.zarr", affs, NN_OFFSETS, block, "uint8")
    decoder = decoder_settings({"method": "connected_components", "min_size": min_size})
    partial = prepare_decoding(
        tmp_path / "affs.zarr", partial_path(tmp_path / "seg.zarr"), decoder, decode_settings(block)
    )
    store = BlockStore.open(partial, DECODED)
    decode_blocks(tmp_path / "affs.zarr", partial, range(len(store)), decoder)
    final, starts = _final_table(partial, store.grid, decoder, records(partial))
    n_objects = stream_cc_table(store.grid, records(partial), min_size, tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "final.npy"), final)
    np.testing.assert_array_equal(np.load(tmp_path / "starts.npy"), starts)
    assert n_objects == final.max() > 0
    assert (final == 0).any()  # one-voxel (or small) objects became background


def test_hand_built_records_two_blocks_along_x(tmp_path: Path) -> None:
    """Block 0 has objects 1 (3 voxels, on its last x plane) and 2 (1 voxel, inside); block 1
    has object 1 (2 voxels) joined to block 0's object 1 across the face, and object 2 (1 voxel,
    on the face but its crossing edge is off): final ids 1 = {0:1, 1:1}, block 0's 2 and block
    1's 2 are lone one-voxel objects (background)."""
    grid = BlockGrid((1, 2, 4), (1, 2, 2))
    blocks = {
        0: {"counts": np.array([3, 1]), "last2": np.array([[1], [0]], np.uint32)},
        1: {
            "counts": np.array([2, 1]),
            "first2": np.array([[1], [2]], np.uint32),
            "crossing2": np.array([[True], [False]]),
        },
    }

    def open_record(block_id: int) -> contextlib.nullcontext:
        return contextlib.nullcontext(blocks[block_id])

    assert stream_cc_table(grid, open_record, 0, tmp_path) == 1
    assert np.load(tmp_path / "final.npy").tolist() == [1, 0, 1, 0]
    assert np.load(tmp_path / "starts.npy").tolist() == [0, 2, 4]
    assert stream_cc_table(grid, open_record, 6, tmp_path) == 0  # 5 voxels: below min_size
