"""Affinity storage: the encodings round-trip, and chunk-row writes cover a block exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.geometry import Box
from pipeline_lib.inference.storage import RowWriter
from pipeline_lib.io.affinities import as_float, encode_affinities
from pipeline_lib.io.volumes import create_array


@pytest.mark.parametrize(("dtype", "tolerance"), [("uint8", 0.5 / 255), ("float16", 2**-11)])
def test_encodings_round_trip_within_their_resolution(dtype, tolerance):
    p = np.random.default_rng(0).random((3, 4, 5, 6)).astype(np.float32)
    p[0, 0, 0, :2] = [-0.1, 1.2]  # out-of-range inputs are clipped (uint8) or kept (float16)
    stored = encode_affinities(p, dtype)
    assert stored.dtype == np.dtype(dtype)
    expected = np.clip(p, 0, 1) if dtype == "uint8" else p
    np.testing.assert_allclose(as_float(stored), expected, atol=tolerance, rtol=0)


def test_row_writer_writes_each_row_of_the_block_once(tmp_path: Path):
    array = create_array(tmp_path / "s.zarr", "affinities", (2, 20, 8, 8), np.uint8, (2, 4, 8, 8), (1, 1, 1))
    block = Box((4, 0, 0), (15, 8, 8))  # 11 rows: two full chunk rows of 4 and a last one of 3
    values = np.arange(2 * 11 * 8 * 8).reshape(2, 11, 8, 8) % 251

    class Slow:  # a store whose writes take a while: the writer's buffer refills meanwhile
        shape = array.shape

        def __setitem__(self, region, value):
            time.sleep(0.05)
            array[region] = value

    with RowWriter(Slow(), block, rows=4, dtype=np.uint8, in_flight=2) as writer:
        for start, stop in [(0, 3), (3, 9), (9, 11)]:  # slabs that do not follow chunk rows
            writer.add(values[:, start:stop])
    stored = array[...]
    np.testing.assert_array_equal(stored[:, 4:15], values)
    assert not stored[:, :4].any() and not stored[:, 15:].any()


def test_row_writer_raises_a_failed_background_write_when_closed(tmp_path: Path):
    class Failing:
        shape = (1, 8, 4, 4)

        def __setitem__(self, region, value):
            raise OSError("disk full")

    writer = RowWriter(Failing(), Box((0, 0, 0), (8, 4, 4)), rows=4, dtype=np.uint8)
    writer.add(np.zeros((1, 4, 4, 4), np.uint8))  # written in the background: no error here
    with pytest.raises(OSError, match="disk full"):
        writer.close()
