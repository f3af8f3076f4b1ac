"""The evaluate stage: score a segmentation store against a volume's labels, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_lib.config import EvaluateSettings
from pipeline_lib.evaluation.metrics import Contingency, evaluate_volumes
from pipeline_lib.io.volumes import SEGMENTATION, atomic_file, has_array, open_array, store_attrs
from pipeline_lib.provenance import provenance


def evaluate_segmentation(
    segmentation_store: str | Path, volume_store: str | Path, output: str | Path, settings: EvaluateSettings
) -> dict[str, object]:
    """Write ``output`` (JSON): VOI split/merge, adapted Rand error, object counts, worst errors.

    Read chunk by chunk; ground-truth label 0 is ignored (CREMI convention).
    """
    if not has_array(volume_store, "labels"):
        raise ValueError(f"{volume_store}: no labels to evaluate against")
    segmentation = open_array(segmentation_store, SEGMENTATION)
    labels = open_array(volume_store, "labels")
    if segmentation.shape != labels.shape:
        raise ValueError(f"segmentation shape {segmentation.shape} differs from labels shape {labels.shape}")
    table = Contingency()
    scores = evaluate_volumes(segmentation, labels, settings.block_shape, contingency=table)
    result: dict[str, object] = {
        **scores.to_dict(),
        "largest_merges": table.largest_merges(5),
        "largest_splits": table.largest_splits(5),
        "segmentation_provenance": store_attrs(segmentation_store).get("provenance", {}),
        "provenance": provenance("evaluate", {"evaluate": settings}, [segmentation_store, volume_store]),
    }
    with atomic_file(output) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=int))
    return result
