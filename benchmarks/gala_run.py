"""A finished ``benchmarks/gala_recipe.py`` run, as the analysis scripts read it.

:class:`FinishedRun` loads the run's ``config.yaml`` (validated, files not checked) and
names its single model and its validation and test datasets (the roles declared in the
datasets file); :meth:`FinishedRun.scored` reads a dataset's stored affinities, their
offsets, its labels and its image (for decoders with an ``image_weight``). Shared by ``gala_threshold_transfer.py``,
``gala_lsd_agglomeration.py`` and ``gala_ensembles.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from pipeline_lib import paths
from pipeline_lib.config import Settings, load_config
from pipeline_lib.io.affinities import affinity_offsets, as_float
from pipeline_lib.io.volumes import AFFINITIES, open_array

Scored = tuple[NDArray[np.float32], list, NDArray[Any], NDArray[Any]]  # affinities, their offsets, labels, image
GOAL = 0.08  # issue 18's CPU target for test ARAND on the gala test crop
# The thresholds the analyses decode at where they read no stored sweep: the middle of the
# sweep's default waterz grid (its 0.01-0.05 and 0.98-0.99 left out)
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class FinishedRun:
    """The run in ``workdir``: its settings, model, validation and test dataset names."""

    workdir: Path
    settings: Settings
    model: str
    val: str
    test: str

    @classmethod
    def load(cls, workdir: Path) -> FinishedRun:
        config = yaml.safe_load((workdir / "config.yaml").read_text())
        settings = load_config(config, check_files=False)
        (model,) = settings.models
        (val,) = [name for name in config["datasets"] if "val" in settings.datasets[name].roles]
        (test,) = [name for name in config["datasets"] if "test" in settings.datasets[name].roles]
        return cls(workdir, settings, model, val, test)

    def scored(self, dataset: str) -> Scored:
        """The dataset's stored affinities (float32), their offsets, its labels and its image."""
        store = self.workdir / paths.prediction(self.model, dataset)
        affinities = as_float(np.asarray(open_array(store, AFFINITIES)[...]))
        volume = self.workdir / paths.volume(dataset)
        labels = np.asarray(open_array(volume, "labels")[...])
        return affinities, affinity_offsets(store), labels, np.asarray(open_array(volume, "image")[...])
