"""Which outputs of a run the report rules read (paths as in docs/conventions.md, Results layout)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline_lib.workflow import Plan


def evaluated_runs(plan: Plan) -> list[list[str]]:
    """``[predictor, decoder, dataset]`` of every evaluation of the run (test datasets with labels);
    a predictor is a model or an ensemble."""
    return [
        [model, decoder, dataset]
        for model in plan.settings.predictors
        for decoder in plan.settings.decoders
        for dataset in plan.datasets_with_role("test")
        if plan.settings.datasets[dataset].has_labels
    ]


def evaluation_path(model: str, decoder: str, dataset: str) -> str:
    return f"results/evaluations/{model}/{decoder}/{dataset}.json"


def run_outputs(plan: Plan) -> list[str]:
    """Every stored output of the run, stage by stage: volumes, predictions, segmentations,
    evaluations."""
    used = {d for role in ("train", "val", "test") for d in plan.datasets_with_role(role)}
    tests = plan.datasets_with_role("test")
    models, decoders = plan.settings.predictors, list(plan.settings.decoders)
    return (
        [f"results/volumes/{d}.zarr" for d in plan.settings.datasets if d in used]
        + [f"results/predictions/{m}/{d}.zarr" for m in models for d in tests]
        + [f"results/segmentations/{m}/{c}/{d}.zarr" for m in models for c in decoders for d in tests]
        + [evaluation_path(*run) for run in evaluated_runs(plan)]
    )


__all__ = ["evaluated_runs", "evaluation_path", "run_outputs"]
