"""Test-time augmentation variants and the offset rules they impose, without torch.

A variant flips spatial axes and optionally swaps y and x (see :mod:`pipeline_lib.inference.tta`
for how an affinity output is inverted). :func:`inverse_plan` says where each output channel
comes from and rejects offsets a variant cannot be inverted for; :func:`check_offsets` runs
it for every variant of a config, so the workflow rejects such a config when it starts,
before any job (this module imports no torch, so reading the config stays fast).
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


__all__ = ["AXIS_NAMES", "ChannelPlan", "Combine", "Offsets", "Variant", "check_offsets", "inverse_plan", "variants"]
