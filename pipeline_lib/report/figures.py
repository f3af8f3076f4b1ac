"""Report figures drawn from slices of the pipeline's zarr stores (matplotlib, Agg backend).

:func:`plot_slices` shows, on the planes :mod:`pipeline_lib.report.slices` chooses, the image,
the mean of the affinity channels :func:`pipeline_lib.offsets.shown_channels` picks (read in
their stored form, :mod:`pipeline_lib.io.affinities`), each segmentation and the ground truth;
it reads only the planes it shows and writes the PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from pipeline_lib.io.affinities import AFFINITIES, as_float  # noqa: E402
from pipeline_lib.io.volumes import atomic_file, has_array, normalize_image, open_array, voxel_size  # noqa: E402
from pipeline_lib.offsets import shown_channels  # noqa: E402
from pipeline_lib.report.slices import MAX_EXTENT, N_Z_SLICES, Plane, choose_planes, label_colours, read_plane  # noqa: E402

PANEL_INCHES = 3.0
DPI = 110


def _mean_affinity(array: Any, plane: Plane, channels: Sequence[int]) -> NDArray[np.float32]:
    """Mean of ``channels`` on ``plane``, read in one go (a chunk holds every channel)."""
    first, last = min(channels), max(channels)
    block = as_float(np.asarray(array[(slice(first, last + 1), *plane.slices)]))
    return block[[c - first for c in channels]].mean(axis=0)


def _contrast(image: NDArray[np.float32]) -> tuple[float, float]:
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    return (float(lo), float(hi) if hi > lo else float(lo) + 1e-6)


def plot_slices(
    volume_store: str | Path,
    prediction_store: str | Path | None,
    segmentation_stores: Mapping[str, str | Path],
    output: str | Path,
    title: str = "",
    n_z: int = N_Z_SLICES,
    max_extent: int = MAX_EXTENT,
) -> list[Plane]:
    """PNG of ``n_z`` xy slices and one zx slice (rows) showing, in columns: the image, the
    mean nearest-neighbour affinity of ``prediction_store``, each named segmentation in random
    colours over the image and the ground-truth labels of ``volume_store`` when it has them.

    Reads only the planes shown (see :mod:`pipeline_lib.report.slices`); the zx slice is drawn
    at its physical aspect ratio. Returns the planes drawn.
    """
    image = open_array(volume_store, "image")
    shape = tuple(image.shape)
    vz, vy, vx = voxel_size(volume_store, "image")
    columns: list[tuple[str, Any]] = [("image", None)]
    affinities = None
    if prediction_store is not None:
        affinities = open_array(prediction_store, AFFINITIES)
        channels = shown_channels(affinities.attrs.get("offsets", [[0, 0, 0]] * affinities.shape[0]))  # type: ignore[arg-type]
        columns.append(("affinities (mean, nearest edges)", ("affinities", affinities, channels)))
    for name, store in segmentation_stores.items():
        columns.append((f"segmentation: {name}", ("labels", open_array(store, "segmentation"))))
    if has_array(volume_store, "labels"):
        columns.append(("ground truth", ("labels", open_array(volume_store, "labels"))))
    for _, spec in columns[1:]:
        if tuple(spec[1].shape[-3:]) != shape:
            raise ValueError(f"array of shape {spec[1].shape} does not match the image shape {shape}")

    planes = choose_planes(shape, n_z, max_extent)
    widths = [(p.window[1][1] - p.window[1][0]) * vx for p in planes]
    heights = [(p.window[0][1] - p.window[0][0]) * (vy if p.axis == 0 else vz) for p in planes]
    ratios = [h / w for h, w in zip(heights, widths, strict=True)]
    fig, axes = plt.subplots(
        len(planes),
        len(columns),
        squeeze=False,
        figsize=(PANEL_INCHES * len(columns), PANEL_INCHES * sum(ratios) + 0.6),
        gridspec_kw={"height_ratios": ratios},
        layout="constrained",
    )
    for row, plane in enumerate(planes):
        aspect = 1.0 if plane.axis == 0 else vz / vx
        raw = normalize_image(read_plane(image, plane))
        lo, hi = _contrast(raw)
        for col, (heading, spec) in enumerate(columns):
            ax = axes[row, col]
            if spec is not None and spec[0] == "affinities":
                affinity = _mean_affinity(spec[1], plane, spec[2])
                ax.imshow(affinity, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
            else:
                ax.imshow(raw, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            if spec is not None and spec[0] == "labels":
                ax.imshow(label_colours(read_plane(spec[1], plane)), aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(heading, fontsize=9)
            if col == 0:
                ax.set_ylabel(plane.title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    with atomic_file(output) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return planes


__all__ = ["plot_slices"]
