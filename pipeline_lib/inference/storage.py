"""How predicted affinities are stored: their encoding, and block writes one chunk row at a time.

Encodings (``predict.dtype``): ``uint8`` holds ``round(255 · p)``, ``float16`` the
probability; :func:`pipeline_lib.decoding.affinity_io.as_float` reads either back as float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_lib.geometry import Box


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


class RowWriter:
    """Takes a block's z-rows in order and writes every ``rows`` of them (a chunk row) at once."""

    def __init__(self, array: Any, block: Box, rows: int, dtype: Any) -> None:
        self.array, self.block = array, block
        self.buffer = np.empty((array.shape[0], min(rows, block.shape[0]), *block.shape[1:]), dtype=dtype)
        self.start = 0  # block row held by buffer row 0
        self.filled = 0

    def add(self, values: np.ndarray) -> None:
        """The next rows ``(C, dz, y, x)`` of the block (cast to the buffer's dtype)."""
        pos = 0
        while pos < values.shape[1]:
            take = min(values.shape[1] - pos, len(self.buffer[0]) - self.filled)
            self.buffer[:, self.filled : self.filled + take] = values[:, pos : pos + take]
            self.filled += take
            pos += take
            if self.filled == len(self.buffer[0]) or self.start + self.filled == self.block.shape[0]:
                z = self.block.begin[0] + self.start
                region = (slice(None), slice(z, z + self.filled), *self.block.slices[1:])
                self.array[region] = self.buffer[:, : self.filled]
                self.start += self.filled
                self.filled = 0
