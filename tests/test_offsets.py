import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.offsets import (
    NEAREST_NEIGHBOUR_OFFSETS,
    missing_nearest_neighbours,
    nearest_neighbour_channels,
    shown_channels,
)


def test_nearest_neighbour_channels_in_axis_order():
    offsets = [[0, -3, 0], [0, 0, -1], [-1, 0, 0], [-3, 0, 0], [0, -1, 0]]
    assert nearest_neighbour_channels(offsets) == (2, 4, 1)
    assert [offsets[c] for c in nearest_neighbour_channels(offsets)] == list(NEAREST_NEIGHBOUR_OFFSETS)


def test_nearest_neighbour_channels_first_duplicate():
    assert nearest_neighbour_channels([[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-1, 0, 0]]) == (0, 1, 2)


def test_missing_nearest_neighbour_is_named():
    assert missing_nearest_neighbours([[-1, 0, 0], [0, -3, 0]]) == [[0, -1, 0], [0, 0, -1]]
    assert missing_nearest_neighbours(NEAREST_NEIGHBOUR_OFFSETS) == []
    with pytest.raises(ConfigError, match=r"nearest-neighbour affinity \[0, -1, 0\]"):
        nearest_neighbour_channels([[-1, 0, 0], [0, 0, -1]])


def test_shown_channels():
    assert shown_channels([[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -3, 0]]) == [0, 1, 2]
    assert shown_channels([[0, -3, 0]]) == [0]
    assert shown_channels([[0, 0, -1], [0, -9, 0], [0, -1, 0], [-1, 0, 0]]) == [0, 2, 3]  # store order
