"""The evaluation table of a run (every model, decoder and dataset) and its comparison plot.

One row per evaluation JSON: ``model, decoder, dataset`` and the score columns of
:class:`~pipeline_lib.evaluation.metrics.SegmentationScores` (``voi`` = split + merge),
sorted by dataset, then adapted Rand error. Written as CSV, as an HTML page (the lowest ARAND
and VOI of each dataset in bold) and as a plot (per dataset: VOI split and merge stacked, and
ARAND, of every model and decoder). Outputs are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline_lib.evaluation.metrics import SegmentationScores  # noqa: E402
from pipeline_lib.io.volumes import atomic_file  # noqa: E402

KEYS = ["model", "decoder", "dataset"]

Evaluation = tuple[str, str, str, str | Path]  # model, decoder, dataset, evaluation JSON


def evaluation_table(evaluations: Sequence[Evaluation]) -> pd.DataFrame:
    """One row per evaluation JSON: its keys and scores (``voi`` = split + merge), sorted by
    dataset then adapted Rand error."""
    rows = []
    for model, decoder, dataset, path in evaluations:
        scores = json.loads(Path(path).read_text())
        row: dict[str, object] = {"model": model, "decoder": decoder, "dataset": dataset}
        row.update(SegmentationScores.from_dict(scores).row())
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*KEYS, *SegmentationScores.COLUMNS])
    return table.sort_values(["dataset", "arand", "model", "decoder"], ignore_index=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def _html(table: pd.DataFrame) -> str:
    """A standalone page (no styling library); the lowest ARAND and VOI of each dataset in bold."""
    lowest = {c: table.groupby("dataset")[c].transform("min") for c in ("arand", "voi")}
    header = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = []
    for i, row in table.iterrows():
        cells = []
        for column, value in row.items():
            bold = column in lowest and value == lowest[str(column)][i]
            cells.append(f"<td><b>{_cell(value)}</b></td>" if bold else f"<td>{_cell(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    body = f"<table class='scores'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    style = (
        "body{font-family:sans-serif;font-size:14px;margin:1em}"
        "table.scores{border-collapse:collapse}"
        "table.scores th,table.scores td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "table.scores th{background:#eee}"
    )
    legend = (
        "<p>VOI split = H(seg|gt), merge = H(gt|seg), in bits; ARAND = adapted Rand error (1 − F); "
        "ground-truth label 0 ignored. Lower is better; the best of each dataset is in bold. "
        "Object counts: segments and ground-truth objects on labelled voxels.</p>"
    )
    head = f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    return f"{head}<body>{legend}{body}</body></html>"


def _plot(table: pd.DataFrame, output: str | Path) -> None:
    """Per dataset: VOI split and merge (stacked) and ARAND of every model/decoder."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(
        len(datasets), 2, squeeze=False, figsize=(10, 0.5 + 0.45 * len(table) + 1.2 * len(datasets))
    )
    for row, dataset in enumerate(datasets):
        rows = table[table["dataset"] == dataset]
        names = [f"{m} / {d}" for m, d in zip(rows["model"], rows["decoder"], strict=True)]
        y = np.arange(len(rows))
        voi, arand = axes[row]
        voi.barh(y, rows["voi_split"], color="tab:blue", label="split")
        voi.barh(y, rows["voi_merge"], left=rows["voi_split"], color="tab:orange", label="merge")
        voi.set_yticks(y, names)
        voi.invert_yaxis()
        voi.set_xlabel("variation of information (bits)")
        voi.set_title(dataset, loc="left", fontsize=10)
        voi.legend(fontsize=8)
        arand.barh(y, rows["arand"], color="tab:green")
        arand.set_yticks(y, [])
        arand.invert_yaxis()
        arand.set_xlim(0, max(1e-3, float(rows["arand"].max()) * 1.15))
        arand.set_xlabel("adapted Rand error")
        for ax in (voi, arand):
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_file(output) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_evaluation_report(
    evaluations: Sequence[Evaluation], csv: str | Path, html: str | Path, plot: str | Path
) -> pd.DataFrame:
    """Write the evaluation table as ``csv`` and ``html`` and the score comparison ``plot`` (PNG)."""
    if not evaluations:
        raise ValueError("no evaluations to tabulate")
    table = evaluation_table(evaluations)
    with atomic_file(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_file(html) as tmp:
        tmp.write_text(_html(table))
    _plot(table, plot)
    return table


__all__ = ["evaluation_table", "write_evaluation_report"]
