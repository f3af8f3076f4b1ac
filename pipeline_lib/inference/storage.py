"""Block writes of predicted outputs one chunk row at a time (:class:`RowWriter`).

The encoding of the affinities written is :mod:`pipeline_lib.io.affinities`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_lib.geometry import Box


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
