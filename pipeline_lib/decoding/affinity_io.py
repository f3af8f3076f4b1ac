"""Reading stored affinities without importing the inference stack (torch) into decode jobs.

The array name and the encoding (``uint8`` 0–255 or ``float16``) are those written by
:mod:`pipeline_lib.inference.predict`; ``tests/decoding`` checks that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.geometry import Box
from pipeline_lib.io.volumes import AFFINITIES, open_array


def as_float(stored: NDArray[Any]) -> NDArray[np.float32]:
    """Affinities as float32 in [0, 1] from their stored form (uint8 0–255 or floats)."""
    if stored.dtype == np.uint8:
        floats = stored.astype(np.float32)
        floats /= np.float32(255.0)  # in place: one float32 copy, not two
        return floats
    return stored.astype(np.float32, copy=False)


def read_stored(array: Any, box: Box, channels: Sequence[int]) -> NDArray[Any]:
    """Channels ``channels`` (in this order) of ``array`` inside ``box``, in the stored dtype."""
    first = min(channels)
    stored = np.asarray(array[(slice(first, max(channels) + 1), *box.slices)])  # one read of the chunks
    wanted = [c - first for c in channels]
    return stored if wanted == list(range(len(stored))) else stored[wanted]


def affinity_offsets(store: str | Path) -> list[list[int]]:
    """The offsets recorded with the affinities of ``store``."""
    offsets = cast(list[list[int]], open_array(store, AFFINITIES).attrs["offsets"])
    return [[int(v) for v in o] for o in offsets]


__all__ = ["AFFINITIES", "affinity_offsets", "as_float", "read_stored"]
