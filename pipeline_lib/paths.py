"""The results layout: every path the workflow writes under ``results/``, spelled once.

Each function gives one output from names (``volume("demo_test")``) or, given Snakemake
wildcards, a rule's pattern (``volume("{dataset}")``). The rules declare their outputs with
these functions (``workflow/rules/common.smk`` imports them) and refer to upstream outputs as
``rules.<name>.output``; :class:`pipeline_lib.workflow.Plan` lists a run's targets with them.
The layout is described in ``docs/conventions.md``.
"""

from __future__ import annotations

RESULTS = "results"


def volume(dataset: str) -> str:
    """An assembled dataset (stage ``assemble``)."""
    return f"{RESULTS}/volumes/{dataset}.zarr"


def model_file(model: str, name: str) -> str:
    """A file of a trained model: ``best.ckpt``, ``metrics.csv``, ``loss.png`` (stage ``train``)."""
    return f"{RESULTS}/models/{model}/{name}"


def checkpoint(model: str) -> str:
    """The checkpoint a model predicts with (best validation loss)."""
    return model_file(model, "best.ckpt")


def prediction(predictor: str, dataset: str) -> str:
    """Affinities of a dataset under a model or an ensemble (stage ``predict``)."""
    return f"{RESULTS}/predictions/{predictor}/{dataset}.zarr"


def segmentation(predictor: str, decoder: str, dataset: str) -> str:
    """A dataset's segmentation by one decoder (stage ``decode``)."""
    return f"{RESULTS}/segmentations/{predictor}/{decoder}/{dataset}.zarr"


def evaluation(predictor: str, decoder: str, dataset: str) -> str:
    """Scores of a segmentation against the dataset's labels (stage ``evaluate``)."""
    return f"{RESULTS}/evaluations/{predictor}/{decoder}/{dataset}.json"


def sweep(predictor: str, decoder: str, dataset: str, ext: str) -> str:
    """A threshold sweep on a validation dataset: ``csv`` table, ``png`` plot, ``json`` best row."""
    return f"{RESULTS}/sweeps/{predictor}/{decoder}/{dataset}.{ext}"


def report_file(name: str) -> str:
    """A figure or table of ``snakemake --report`` (``slices/{model}/{dataset}.png``,
    ``evaluation.csv``, ``provenance.html``, …)."""
    return f"{RESULTS}/report/{name}"


def slices_figure(predictor: str, dataset: str) -> str:
    """The report's slice figure of a predictor on a test dataset."""
    return report_file(f"slices/{predictor}/{dataset}.png")


def block_job_marker(output: str, job: str) -> str:
    """The marker a block job of a blockwise ``output`` leaves (``job``: its number, or a step name)."""
    return f"{output}.jobs/{job}.done"


__all__ = [
    "RESULTS",
    "block_job_marker",
    "checkpoint",
    "evaluation",
    "model_file",
    "prediction",
    "report_file",
    "segmentation",
    "slices_figure",
    "sweep",
    "volume",
]
