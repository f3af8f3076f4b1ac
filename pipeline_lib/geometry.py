"""Regions of a volume and the one block grid that predict, decode and evaluate share.

A :class:`Box` is a half-open region ``[begin, end)`` in voxel coordinates ``(z, y, x)``.
A :class:`BlockGrid` cuts a volume of a given shape into blocks of ``block_shape``
(the last block along an axis may be smaller)::

        x →
      ┌──────┬──────┬────┐   block ids in C order: 0 1 2 / 3 4 5
    y │  0   │  1   │ 2  │   each block is written by exactly one job,
    ↓ ├──────┼──────┼────┤   so block_shape must be a multiple of the
      │  3   │  4   │ 5  │   output zarr chunk shape (no two jobs
      └──────┴──────┴────┘   ever write the same chunk)

A job reads its block grown by a *halo* (context) clipped to the volume, computes, and
writes back only the block itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Coord = tuple[int, ...]


def _coord(values: Sequence[int]) -> Coord:
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class Box:
    """Half-open box ``[begin, end)``; ``begin`` and ``end`` have one entry per axis."""

    begin: Coord
    end: Coord

    def __post_init__(self) -> None:
        if len(self.begin) != len(self.end):
            raise ValueError(f"Box begin {self.begin} and end {self.end} differ in length")
        if any(e < b for b, e in zip(self.begin, self.end, strict=True)):
            raise ValueError(f"Box end {self.end} lies before begin {self.begin}")

    @classmethod
    def from_shape(cls, shape: Sequence[int], offset: Sequence[int] | None = None) -> Box:
        begin = _coord(offset) if offset is not None else (0,) * len(shape)
        return cls(begin, tuple(b + int(s) for b, s in zip(begin, shape, strict=True)))

    @property
    def shape(self) -> Coord:
        return tuple(e - b for b, e in zip(self.begin, self.end, strict=True))

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices selecting this box from an array whose origin is the volume origin."""
        return tuple(slice(b, e) for b, e in zip(self.begin, self.end, strict=True))

    def relative_to(self, outer: Box) -> tuple[slice, ...]:
        """Slices selecting this box inside an array that holds ``outer``."""
        if self.intersect(outer) != self:
            raise ValueError(f"{self} is not inside {outer}")
        return tuple(slice(b - o, e - o) for b, e, o in zip(self.begin, self.end, outer.begin, strict=True))

    def intersect(self, other: Box) -> Box:
        begin = tuple(max(a, b) for a, b in zip(self.begin, other.begin, strict=True))
        end = tuple(min(a, b) for a, b in zip(self.end, other.end, strict=True))
        return Box(begin, tuple(max(b, e) for b, e in zip(begin, end, strict=True)))

    def grow(self, amount: Sequence[int]) -> Box:
        """The box enlarged by ``amount`` voxels on both sides of each axis."""
        return Box(
            tuple(b - a for b, a in zip(self.begin, amount, strict=True)),
            tuple(e + a for e, a in zip(self.end, amount, strict=True)),
        )

    def shift(self, offset: Sequence[int]) -> Box:
        return Box(
            tuple(b + o for b, o in zip(self.begin, offset, strict=True)),
            tuple(e + o for e, o in zip(self.end, offset, strict=True)),
        )

    def __str__(self) -> str:
        return "[" + ", ".join(f"{b}:{e}" for b, e in zip(self.begin, self.end, strict=True)) + "]"


@dataclass(frozen=True)
class BlockGrid:
    """A deterministic grid of blocks over a volume of ``shape``.

    Block ids run in C order over the grid; ``block(i)`` is clipped to the volume.
    """

    shape: Coord
    block_shape: Coord

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.block_shape):
            raise ValueError(f"volume shape {self.shape} and block shape {self.block_shape} differ in rank")
        if any(b <= 0 for b in self.block_shape):
            raise ValueError(f"block shape {self.block_shape} must be positive")

    @classmethod
    def aligned(cls, shape: Sequence[int], block_shape: Sequence[int], chunk_shape: Sequence[int]) -> BlockGrid:
        """A grid whose blocks are whole zarr chunks; a misaligned block shape is rejected."""
        for b, c in zip(block_shape, chunk_shape, strict=True):
            if b % c:
                raise ValueError(
                    f"block shape {tuple(block_shape)} is not a multiple of chunk shape {tuple(chunk_shape)}: "
                    "concurrent block writers would share chunks"
                )
        return cls(_coord(shape), _coord(block_shape))

    @property
    def grid_shape(self) -> Coord:
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block_shape, strict=True))

    @property
    def volume(self) -> Box:
        return Box.from_shape(self.shape)

    def __len__(self) -> int:
        n = 1
        for g in self.grid_shape:
            n *= g
        return n

    def block_index(self, block_id: int) -> Coord:
        if not 0 <= block_id < len(self):
            raise IndexError(f"block id {block_id} outside grid of {len(self)} blocks")
        index = []
        for g in reversed(self.grid_shape):
            index.append(block_id % g)
            block_id //= g
        return tuple(reversed(index))

    def block(self, block_id: int) -> Box:
        index = self.block_index(block_id)
        begin = tuple(i * b for i, b in zip(index, self.block_shape, strict=True))
        return Box.from_shape(self.block_shape, begin).intersect(self.volume)

    def blocks(self) -> Iterator[tuple[int, Box]]:
        for block_id in range(len(self)):
            yield block_id, self.block(block_id)

    def with_halo(self, block_id: int, halo: Sequence[int]) -> Box:
        """The block grown by ``halo`` and clipped to the volume: what a job reads."""
        return self.block(block_id).grow(halo).intersect(self.volume)


__all__ = ["Box", "BlockGrid"]


def reflect_padding_problem(shape: Sequence[int], window: Sequence[int]) -> str | None:
    """Why a volume of ``shape`` cannot be reflect-padded to ``window``, or None if it can.

    A volume shorter than the window along an axis is padded by ``(w - n) // 2`` before and
    the rest after (MONAI's split); reflection cannot pad by ``n`` voxels or more.
    """
    for axis, (n, w) in zip("zyx", zip(shape, window, strict=True), strict=True):
        if n < w and w - n - (w - n) // 2 >= n:
            return f"axis {axis} has {n} voxels, too few to reflect-pad to the window's {w}"
    return None
