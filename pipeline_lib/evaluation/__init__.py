"""Evaluation of segmentations against ground truth (VOI, adapted Rand)."""

from pipeline_lib.evaluation.metrics import (
    Contingency,
    SegmentationScores,
    evaluate_arrays,
    evaluate_volumes,
)

__all__ = [
    "Contingency",
    "SegmentationScores",
    "evaluate_arrays",
    "evaluate_volumes",
]
