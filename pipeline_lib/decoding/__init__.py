"""Affinities → instance segmentation: decoders by name, run blockwise and stitched."""

from pipeline_lib.decoding.blockwise import decode_blocks, decode_volume, prepare_decoding, stitch_and_relabel
from pipeline_lib.decoding.registry import get_decoder, register

__all__ = ["decode_blocks", "decode_volume", "get_decoder", "prepare_decoding", "register", "stitch_and_relabel"]
