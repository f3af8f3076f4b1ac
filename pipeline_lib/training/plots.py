"""The loss-curve figure written next to a trained model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline_lib.io.volumes import atomic_file  # noqa: E402


def plot_losses(metrics: pd.DataFrame, output: str | Path) -> None:
    """Training loss per logged step and validation loss per validation run, log-scaled."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for column, label in (("train/loss", "training"), ("val/loss", "validation")):
        if column in metrics:
            rows = metrics.dropna(subset=[column])
            ax.plot(rows["step"], rows[column], marker="o" if label == "validation" else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (weighted sum of the targets' terms)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(output) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
