"""Decoders by method name: affinities of one block (with context) → instance labels.

A decoder is a function ``(affinities (c, z, y, x) float32 in [0, 1], offsets, settings) ->
labels (z, y, x)`` with 0 for background and positive ids otherwise. Its registration says
how blockwise results are stitched:

- ``"affinity"``: exact; connected components of the thresholded nearest-neighbour graph.
  Blockwise, such a method is run by
  :func:`~pipeline_lib.decoding.connected_components.label_block` on each block's own
  edges (no halo) and blocks are joined across faces wherever the crossing edge exceeds the
  threshold; the registered function is what :func:`decode_array` runs on a whole array;
- ``"graph"``: block-independent agglomeration (waterz, mutex watershed, seeded
  watershed): fragments per block with the context ``settings.params["halo"]``, one global
  region graph from the block records, one agglomeration (or flood) of it
  (:mod:`~pipeline_lib.decoding.graph_decode`); the registered function decodes a whole
  array the same way, as one block.

It also says which channels the decoder reads (``reads``): ``"nearest"`` (the three
nearest-neighbour channels; connected components, seeded watershed, waterz) or ``"all"``
(mutex watershed). Blockwise decoding and the sweep read and convert only those channels
and pass the decoder their offsets, so a decoder of a many-channel model (the demo's has
six: nearest and long-range) handles half the data or less.

:func:`decode_array` decodes a whole in-memory array including post-processing (small
objects, consecutive relabelling): the reference that blockwise decoding approximates.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.config import DecoderSettings, build
from pipeline_lib.config.schema import validate_with_defaults
from pipeline_lib.decoding.connected_components import connected_components
from pipeline_lib.decoding.graph_decode import decode_graph
from pipeline_lib.decoding.image_evidence import image_weight
from pipeline_lib.decoding.postprocess import relabel_consecutive, remove_small_objects
from pipeline_lib.errors import ConfigError
from pipeline_lib.offsets import nearest_neighbour_channels

DecodeFunction = Callable[[NDArray[np.float32], Sequence[Sequence[int]], DecoderSettings], NDArray[np.integer]]
Stitch = Literal["affinity", "graph"]
Reads = Literal["nearest", "all"]


@dataclass(frozen=True)
class Decoder:
    decode: DecodeFunction
    stitch: Stitch
    fixed_halo: tuple[int, int, int] | None  # None: ``settings.params["halo"]``
    reads: Reads

    def channels(self, offsets: Sequence[Sequence[int]]) -> list[int]:
        """The channels of affinities with ``offsets`` that the decoder reads, in store order.

        Store order, not axis order: a decoder given these channels with their offsets finds
        each axis's channel by its offset (:func:`nearest_neighbour_channels` gives them in
        z, y, x order).
        """
        if self.reads == "nearest":
            return sorted(nearest_neighbour_channels(offsets))
        return list(range(len(offsets)))

    def halo(self, settings: DecoderSettings) -> tuple[int, int, int]:
        """Context read around each block."""
        if self.fixed_halo is not None:
            return self.fixed_halo
        z, y, x = (int(v) for v in settings.params["halo"])
        return (z, y, x)


_DECODERS: dict[str, Decoder] = {}


def register(
    method: str, stitch: Stitch = "graph", halo: tuple[int, int, int] | None = None, reads: Reads = "all"
) -> Callable[[DecodeFunction], DecodeFunction]:
    """Register ``function`` as decoder ``method`` (also add the method to the config schema).

    ``halo`` fixes the context; by default it is the decoder's ``params.halo``. ``reads``:
    the channels the function uses (``"nearest"`` or ``"all"``); it is given only those.
    """

    def add(function: DecodeFunction) -> DecodeFunction:
        _DECODERS[method] = Decoder(function, stitch, halo, reads)
        return function

    return add


def get_decoder(method: str) -> Decoder:
    if method not in _DECODERS:
        close = difflib.get_close_matches(method, _DECODERS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown decoder method '{method}'{hint}; available: {', '.join(sorted(_DECODERS))}")
    return _DECODERS[method]


def decoder_settings(entry: Mapping[str, Any], name: str = "decoder") -> DecoderSettings:
    """Validate one ``decoders`` entry of the config (filling schema defaults) into settings."""
    config = {"datasets": ["_"], "models": {"_": {"architecture": "_"}}, "decoders": {name: dict(entry)}}
    data = validate_with_defaults(config, "config", "decoder settings")
    return build(DecoderSettings, data["decoders"][name])


def decode_array(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]], settings: DecoderSettings
) -> NDArray[np.integer]:
    """Whole-array decoding with post-processing: labels ``1..n``, 0 background.

    Of the predictions alone: a decoder with an ``image_weight`` is refused (decode it with
    :func:`~pipeline_lib.decoding.sweep.segmentations` and the image)."""
    if image_weight(settings):
        raise ValueError("decode_array decodes predictions alone; pass the image to segmentations() for image_weight")
    decoder = get_decoder(settings.method)
    channels = decoder.channels(offsets)
    if channels != list(range(len(offsets))):
        affinities, offsets = affinities[channels], [offsets[c] for c in channels]
    labels = decoder.decode(affinities.astype(np.float32, copy=False), offsets, settings)
    return postprocess(labels, settings)


def postprocess(labels: NDArray[np.integer], settings: DecoderSettings) -> NDArray[np.integer]:
    """Small objects per ``settings`` (whole-array sizes), then consecutive labels ``1..n``."""
    return relabel_consecutive(remove_small_objects(labels, settings.min_size, settings.small_objects))


@register("connected_components", stitch="affinity", halo=(0, 0, 0), reads="nearest")
def _connected_components(
    affinities: NDArray[np.float32], offsets: Sequence[Sequence[int]], settings: DecoderSettings
) -> NDArray[np.integer]:
    return connected_components(affinities, offsets, settings.threshold)


# waterz-style agglomeration, mutex watershed and seeded watershed of the region graph of fragments
register("waterz", stitch="graph", reads="nearest")(decode_graph)
register("mutex_watershed", stitch="graph")(decode_graph)
register("seeded_watershed", stitch="graph", reads="nearest")(decode_graph)


__all__ = ["Decoder", "decode_array", "decoder_settings", "get_decoder", "postprocess", "register"]
