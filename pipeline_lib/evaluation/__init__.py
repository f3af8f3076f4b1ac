"""Evaluation of segmentations against ground truth (VOI, adapted Rand)."""

from pipeline_lib.evaluation.metrics import (
    Contingency,
    SegmentationScores,
    evaluate_arrays,
    evaluate_volumes,
)
from pipeline_lib.evaluation.run import evaluate_segmentation

__all__ = [
    "Contingency",
    "SegmentationScores",
    "evaluate_arrays",
    "evaluate_segmentation",
    "evaluate_volumes",
]
