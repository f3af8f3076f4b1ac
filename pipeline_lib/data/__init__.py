"""Volumes to train and segment: declared datasets assembled into one zarr store each
(:mod:`~pipeline_lib.data.assemble`), and the synthetic demo volumes
(:mod:`~pipeline_lib.data.synthetic`)."""
