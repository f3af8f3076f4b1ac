"""Training a model on affinities (and optional extra targets) with PyTorch Lightning.

- :func:`~pipeline_lib.training.train.train_model`: train or resume one model entry and
  write ``best.ckpt``, ``metrics.csv`` and ``loss.png`` (the ``train`` rule);
- :class:`~pipeline_lib.training.module.AffinityModule`: the LightningModule (loss,
  optimizer, schedule) around a network from :mod:`pipeline_lib.models`;
- :class:`~pipeline_lib.training.data.PatchDataModule`: the random training patches and the
  fixed validation patches, read lazily from assembled volumes;
- :mod:`~pipeline_lib.training.augment`, :mod:`~pipeline_lib.training.batch_augment`:
  augmentations in the loader workers or batched on the training device;
- :mod:`~pipeline_lib.training.losses`, :mod:`~pipeline_lib.training.callbacks`,
  :mod:`~pipeline_lib.training.plots`: losses, resume and stop callbacks, the loss figure.
"""
