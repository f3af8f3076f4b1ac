"""Prediction of affinities from a trained checkpoint (or an ensemble of them), block by block.

- :mod:`~pipeline_lib.inference.predict`: the ``predict`` stage (prepare the store, predict
  blocks, publish), and whole-volume prediction;
- :mod:`~pipeline_lib.inference.predictor`: checkpoints loaded without Lightning, batches,
  precision, test-time augmentation and ensembles on the model's device;
- :mod:`~pipeline_lib.inference.sliding`: windows on one lattice of the whole volume, blended
  as MONAI's sliding-window inference does;
- :mod:`~pipeline_lib.inference.tta`: exact inversion of flips and transposes for affinities
  (the rules on offsets are in :mod:`pipeline_lib.offsets`);
- :mod:`~pipeline_lib.inference.storage`: chunk-row writes of a block (the stored encoding is
  :mod:`pipeline_lib.io.affinities`).
"""
