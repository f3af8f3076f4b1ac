"""Affinities → instance segmentation: decoders by name, run blockwise and stitched, and swept.

- :func:`decode_array`: one in-memory volume, with post-processing (the reference);
- :func:`prepare_decoding`, :func:`decode_blocks`, :func:`stitch_blocks`,
  :func:`relabel_blocks`, :func:`finish_decoding`: the blockwise steps the Snakemake rules
  run (:func:`decode_volume` runs them all in one process, :func:`stitch_and_relabel` the
  last three);
- :func:`sweep`: one decoder over a list of thresholds on a validation volume;
- :func:`get_decoder`, :func:`register`, :func:`decoder_settings`: the registry and settings.
"""

from pipeline_lib.decoding.blockwise import decode_blocks, decode_volume, prepare_decoding, stitch_and_relabel
from pipeline_lib.decoding.registry import decode_array, decoder_settings, get_decoder, register
from pipeline_lib.decoding.relabel import finish_decoding, relabel_blocks, stitch_blocks
from pipeline_lib.decoding.sweep import sweep, tuned_decoder

__all__ = [
    "decode_array",
    "decode_blocks",
    "decode_volume",
    "decoder_settings",
    "finish_decoding",
    "get_decoder",
    "prepare_decoding",
    "register",
    "relabel_blocks",
    "stitch_and_relabel",
    "stitch_blocks",
    "sweep",
    "tuned_decoder",
]
