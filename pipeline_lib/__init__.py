"""Segmentation of electron-microscopy volumes: assemble, train, predict, decode, evaluate.

The library knows nothing of Snakemake: every stage is a function of plain paths and typed
settings (:mod:`pipeline_lib.config`), so it can be used and tested on its own.
"""

__version__ = "0.1.0"
