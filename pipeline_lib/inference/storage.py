"""Block writes of predicted outputs one chunk row at a time (:class:`RowWriter`, in a
background thread so that storage keeps up with the device), and their encoding on the
device (:func:`encode_tensors`).

The encoding of the affinities written is :mod:`pipeline_lib.io.affinities`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from pipeline_lib.geometry import Box


def encode_tensors(outputs: tuple[torch.Tensor, ...], dtype: str) -> tuple[torch.Tensor, ...]:
    """Storage form of a prediction's outputs on their device: affinities as
    :func:`~pipeline_lib.io.affinities.encode_affinities` computes them (clip, ``· 255``, round
    half to even, in float32), any further output (the Monte-Carlo variance) as float16. The
    float32 affinities are scaled in place (no temporaries)."""
    affinities, *rest = outputs
    if dtype == "uint8":
        affinities = affinities.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return (affinities.half() if dtype != "uint8" else affinities, *(r.half() for r in rest))


class RowWriter:
    """Takes a block's z-rows in order and writes every ``rows`` of them (a chunk row) at once.

    Writes run in a background thread (zarr encodes a row's chunks in parallel there), at most
    ``in_flight`` at a time, while the caller computes the next rows; :meth:`close` waits for
    all of them and re-raises a failed write. Use it as a context manager.
    """

    def __init__(self, array: Any, block: Box, rows: int, dtype: Any, in_flight: int = 2) -> None:
        self.array, self.block, self.in_flight = array, block, in_flight
        self.buffer = np.empty((array.shape[0], min(rows, block.shape[0]), *block.shape[1:]), dtype=dtype)
        self.start = 0  # block row held by buffer row 0
        self.filled = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="row-writer")
        self.pending: deque[Future[None]] = deque()

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
                while len(self.pending) >= self.in_flight:
                    self.pending.popleft().result()
                self.pending.append(
                    self.pool.submit(self.array.__setitem__, region, self.buffer[:, : self.filled].copy())
                )
                self.start += self.filled
                self.filled = 0

    def close(self) -> None:
        """Wait for every write; the first failed one raises here."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
