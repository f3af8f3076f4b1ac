"""The storage format of predicted affinities: array name, encoding, recorded offsets.

A prediction store holds the array :data:`AFFINITIES` of shape ``(C, z, y, x)``, channel
``k`` for the offset ``attrs["offsets"][k]`` (:mod:`pipeline_lib.offsets`). Encodings
(``predict.dtype``): ``uint8`` holds ``round(255 · p)``, ``float16`` the probability
``p``. :func:`encode_affinities` writes either form, :func:`as_float` reads either back as
float32 in [0, 1]; :func:`read_stored` and :func:`affinity_offsets` read a store. No torch:
decode jobs and the report import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.geometry import Box
from pipeline_lib.io.volumes import AFFINITIES, open_array


def encode_affinities(affinities: np.ndarray, dtype: str) -> np.ndarray:
    """Storage form of ``(C, …)`` float affinities: uint8 ``round(255 · p)`` or float16."""
    if dtype == "uint8":
        encoded = np.empty(affinities.shape, dtype=np.uint8)
        for c, channel in enumerate(affinities):  # one channel of float temporaries at a time
            scaled = np.clip(channel, 0.0, 1.0)
            scaled *= 255.0
            encoded[c] = np.rint(scaled, out=scaled)
        return encoded
    return affinities.astype(np.float16)


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


__all__ = ["AFFINITIES", "affinity_offsets", "as_float", "encode_affinities", "read_stored"]
