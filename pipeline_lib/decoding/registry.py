"""Decoders by method name: affinities of one block (with context) → instance labels.

A decoder is a function ``(affinities (c, z, y, x) float32 in [0, 1], offsets, settings) ->
labels (z, y, x)`` with 0 for background and positive ids otherwise. ``halo`` is the
context it needs around a block for its result inside the block to be right.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding.connected_components import connected_components
from pipeline_lib.errors import ConfigError

DecodeFunction = Callable[[NDArray[np.float32], Sequence[Sequence[int]], DecoderSettings], NDArray[np.integer]]


@dataclass(frozen=True)
class Decoder:
    decode: DecodeFunction
    halo: tuple[int, int, int]


_DECODERS: dict[str, Decoder] = {}


def register(method: str, halo: tuple[int, int, int] = (0, 0, 0)) -> Callable[[DecodeFunction], DecodeFunction]:
    def add(function: DecodeFunction) -> DecodeFunction:
        _DECODERS[method] = Decoder(function, halo)
        return function

    return add


def get_decoder(method: str) -> Decoder:
    if method not in _DECODERS:
        close = difflib.get_close_matches(method, _DECODERS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown decoder method '{method}'{hint}; available: {', '.join(sorted(_DECODERS))}")
    return _DECODERS[method]


@register("connected_components")
def _connected_components(affinities: NDArray[np.float32], offsets: Sequence[Sequence[int]], settings: DecoderSettings) -> NDArray[np.integer]:
    return connected_components(affinities, offsets, settings.threshold)
