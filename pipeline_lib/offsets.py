"""Affinity offsets: the nearest-neighbour set, channel lookup, and the rules of test-time augmentation.

The one home of these conventions; config, training, inference, decoding and the report
import it, and it imports no torch (reading the config at workflow start stays fast).

Channel ``k`` of an affinity array has an offset ``o_k = (dz, dy, dx)`` with entries ≤ 0;
its value at voxel ``v`` describes the edge between ``v`` and ``v + o_k`` (see
:mod:`pipeline_lib.targets`). Every decoder reads the three nearest-neighbour channels
:data:`NEAREST_NEIGHBOUR_OFFSETS`; :func:`nearest_neighbour_channels` finds them.

A test-time augmentation :class:`Variant` flips spatial axes and optionally swaps y and x
(see :mod:`pipeline_lib.inference.tta` for how an affinity output is inverted).
:func:`inverse_plan` says where each output channel comes from and rejects offsets a variant
cannot be inverted for; :func:`check_offsets` runs it for every variant of a config, so the
workflow rejects such a config when it starts, before any job.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pipeline_lib.errors import ConfigError

if TYPE_CHECKING:
    import torch

AXIS_NAMES = ("z", "y", "x")
Combine = Literal["mean", "min", "max"]
Offsets = Sequence[Sequence[int]]
NEAREST_NEIGHBOUR_OFFSETS = ([-1, 0, 0], [0, -1, 0], [0, 0, -1])  # z, y, x


def missing_nearest_neighbours(offsets: Offsets) -> list[list[int]]:
    """The nearest-neighbour offsets (z, y, x order) that ``offsets`` lacks."""
    present = [[int(v) for v in o] for o in offsets]
    return [list(o) for o in NEAREST_NEIGHBOUR_OFFSETS if list(o) not in present]


def nearest_neighbour_channels(offsets: Offsets) -> tuple[int, int, int]:
    """Indices of the channels with offsets (-1,0,0), (0,-1,0), (0,0,-1), in this order.

    Raises :class:`ConfigError` naming the first one ``offsets`` lacks.
    """
    missing = missing_nearest_neighbours(offsets)
    if missing:
        raise ConfigError(
            f"decoding needs the nearest-neighbour affinity {missing[0]}; "
            f"model offsets are {[list(o) for o in offsets]}"
        )
    present = [[int(v) for v in o] for o in offsets]
    z, y, x = (present.index(list(o)) for o in NEAREST_NEIGHBOUR_OFFSETS)
    return (z, y, x)


def shown_channels(offsets: Offsets) -> list[int]:
    """The channels a figure or viewer shows: the nearest-neighbour ones in store order, or
    every channel of a store that lacks one of them."""
    if missing_nearest_neighbours(offsets):
        return list(range(len(offsets)))
    return sorted(nearest_neighbour_channels(offsets))


@dataclass(frozen=True)
class Variant:
    """Flip the spatial ``flips`` (0 = z, 1 = y, 2 = x), then swap y and x if ``transpose``."""

    flips: tuple[int, ...] = ()
    transpose: bool = False

    @property
    def name(self) -> str:
        parts = (["flip_" + "".join(AXIS_NAMES[a] for a in self.flips)] if self.flips else []) + (
            ["transpose"] if self.transpose else []
        )
        return "+".join(parts) or "identity"

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``(B, C, z, y, x)`` of input windows."""
        if self.flips:
            windows = windows.flip([2 + a for a in self.flips])
        if self.transpose:
            windows = windows.transpose(3, 4)
        return windows


def variants(flip: Sequence[str], transpose: bool) -> list[Variant]:
    """All combinations of flipping each axis in ``flip`` (names z, y, x) and transposing.

    The identity comes first; there are ``2 ** (len(flip) + transpose)`` variants.
    """
    axes = sorted({AXIS_NAMES.index(a) for a in flip})
    result = []
    for t in [False, True] if transpose else [False]:
        for n in range(len(axes) + 1):
            for subset in itertools.combinations(axes, n):
                result.append(Variant(tuple(subset), t))
    return result


def _swap_yx(offset: Sequence[int]) -> tuple[int, int, int]:
    return (int(offset[0]), int(offset[2]), int(offset[1]))


@dataclass(frozen=True)
class ChannelPlan:
    source: int  # channel of the un-transposed model output
    shift: tuple[int, int, int] | None  # offset to shift by after un-flipping, if any


def inverse_plan(variant: Variant, offsets: Offsets) -> list[ChannelPlan]:
    """How each output channel is recovered from the augmented output; rejects bad offsets."""
    index = {tuple(int(v) for v in o): k for k, o in enumerate(offsets)}
    plan = []
    for o in offsets:
        offset = (int(o[0]), int(o[1]), int(o[2]))
        source = index[offset]
        if variant.transpose:
            partner = _swap_yx(offset)
            if partner not in index:
                raise ConfigError(
                    f"config key 'predict.tta.transpose': offset {list(offset)} has no y–x partner "
                    f"{list(partner)} among the model's offsets; add it or disable the transpose"
                )
            source = index[partner]
        nonzero = {a for a in range(3) if offset[a] != 0}
        flipped = nonzero & set(variant.flips)
        if flipped and flipped != nonzero:
            raise ConfigError(
                f"config key 'predict.tta.flip': diagonal offset {list(offset)} cannot be flipped along "
                f"{AXIS_NAMES[min(flipped)]} alone (it would become an edge direction the model lacks); "
                "remove that axis from the flips"
            )
        plan.append(ChannelPlan(source, offset if flipped else None))
    return plan


def check_offsets(flip: Sequence[str], transpose: bool, offsets: Offsets) -> None:
    """Reject (:class:`ConfigError`) offsets that some variant of ``flip``/``transpose`` cannot invert."""
    for variant in variants(flip, transpose):
        inverse_plan(variant, offsets)


__all__ = [
    "AXIS_NAMES",
    "NEAREST_NEIGHBOUR_OFFSETS",
    "ChannelPlan",
    "Combine",
    "Offsets",
    "Variant",
    "check_offsets",
    "inverse_plan",
    "missing_nearest_neighbours",
    "nearest_neighbour_channels",
    "shown_channels",
    "variants",
]
