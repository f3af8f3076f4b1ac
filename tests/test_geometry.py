import numpy as np
import pytest

from pipeline_lib.geometry import BlockGrid, Box, reflect_padding_problem


def test_box_arithmetic():
    box = Box((2, 3, 4), (5, 7, 9))
    assert box.shape == (3, 4, 5)
    assert box.size == 60
    assert box.grow((1, 1, 1)) == Box((1, 2, 3), (6, 8, 10))
    assert box.intersect(Box((0, 0, 0), (4, 4, 4))) == Box((2, 3, 4), (4, 4, 4))
    assert box.shift((1, 0, -1)) == Box((3, 3, 3), (6, 7, 8))
    # empty intersection is a zero-size box, not an error
    assert Box((0, 0, 0), (1, 1, 1)).intersect(Box((5, 5, 5), (6, 6, 6))).size == 0


def test_relative_slices_select_the_inner_box():
    volume = np.arange(10 * 10 * 10).reshape(10, 10, 10)
    outer, inner = Box((2, 2, 2), (8, 8, 8)), Box((3, 4, 5), (5, 6, 7))
    assert np.array_equal(volume[outer.slices][inner.relative_to(outer)], volume[inner.slices])
    with pytest.raises(ValueError):
        Box((0, 0, 0), (3, 3, 3)).relative_to(inner)


def test_grid_covers_volume_exactly_once_with_uneven_edges():
    grid = BlockGrid((10, 7, 5), (4, 3, 5))
    assert grid.grid_shape == (3, 3, 1)
    assert len(grid) == 9
    count = np.zeros(grid.shape, dtype=int)
    for _, box in grid.blocks():
        count[box.slices] += 1
    assert (count == 1).all()
    assert grid.block(8) == Box((8, 6, 0), (10, 7, 5))
    assert grid.block_index(5) == (1, 2, 0)


def test_halo_is_clipped_to_the_volume():
    grid = BlockGrid((10, 10, 10), (5, 5, 5))
    assert grid.with_halo(0, (2, 2, 2)) == Box((0, 0, 0), (7, 7, 7))
    assert grid.with_halo(7, (2, 2, 2)) == Box((3, 3, 3), (10, 10, 10))


def test_misaligned_grid_is_rejected():
    BlockGrid.aligned((64, 64, 64), (32, 64, 64), (16, 32, 32))
    with pytest.raises(ValueError, match="not a multiple of chunk shape"):
        BlockGrid.aligned((64, 64, 64), (24, 64, 64), (16, 32, 32))


@pytest.mark.parametrize(
    ("shape", "window", "fits"),
    [
        ((16, 64, 64), (16, 64, 64), True),  # no padding
        ((9, 64, 64), (16, 64, 64), True),  # pads 3 before, 4 after: < 9
        ((5, 64, 64), (16, 64, 64), False),  # pads 5 before, 6 after: not < 5
        ((16, 64, 21), (16, 64, 64), False),  # x: pads 21 before, 22 after
    ],
)
def test_reflect_padding_problem(shape, window, fits):
    problem = reflect_padding_problem(shape, window)
    assert (problem is None) == fits
    if not fits:
        assert "too few to reflect-pad" in problem
