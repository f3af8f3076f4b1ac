"""Reading and writing data, with no knowledge of the stages.

- :mod:`~pipeline_lib.io.sources`, :mod:`~pipeline_lib.io.files`, :mod:`~pipeline_lib.io.tiles`:
  lazy sources over HDF5, zarr, TIFF, PNG, npy and tile JSONs (the datasets a user declares);
- :mod:`~pipeline_lib.io.volumes`: the pipeline's zarr v3 / OME-Zarr stores, array names and
  atomic outputs; :mod:`~pipeline_lib.io.integrity`: their checksums;
- :mod:`~pipeline_lib.io.affinities`: the storage format of predicted affinities.
"""
