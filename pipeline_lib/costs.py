"""What a run will cost, before it runs: per stage and dataset the blocks, jobs, voxels, scratch
disk and output sizes (``python -m pipeline_lib plan``).

Sizes are upper bounds of uncompressed bytes (zstd usually stores affinities and
segmentations several times smaller); scratch is what a stage holds on disk until it
publishes its output: the block-local labels of decoding (uint16 or uint32 per voxel: counted
at 4 bytes) and its block records' face planes (their edge tables, which grow with the
contacts rather than the voxels, are not counted). Read from the configuration and source
headers only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline_lib.decoding.blockwise import segmentation_dtype
from pipeline_lib.decoding.region_graph import face_depth
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.workflow import Plan

FACE_BYTES = 4 * 2  # per voxel of a block face in a CC record: label (up to 4 bytes) on two planes
LABEL_BYTES = 4  # block-local labels in decode scratch (uint16 or uint32)


@dataclass(frozen=True)
class StageCost:
    """One stage of one dataset (and predictor, decoder)."""

    stage: str
    target: str
    voxels: int
    blocks: int
    jobs: int
    scratch_bytes: int
    output_bytes: int


def _image_bytes(plan: Plan, dataset: str) -> int:
    spec = plan.settings.datasets[dataset]
    if spec.synthetic is not None or spec.image is None:
        return 1
    from pipeline_lib.io.sources import open_source

    return int(np.dtype(open_source(spec.image, Path("/")).dtype).itemsize)


def _face_voxels(block_shape: tuple[int, ...]) -> int:
    z, y, x = block_shape
    return y * x + z * x + z * y


def _record_bytes(grid: BlockGrid, method: str, offsets: list[list[int]]) -> int:
    """Face planes of every block record of ``method``: connected components keep one label plane
    on each side; graph decoders keep, as deep as their offsets reach, the labels on both sides
    and the uint8 affinities they read (seeded watershed twice: fragments and seeds)."""
    decoder = get_decoder(method)
    if decoder.stitch != "graph":
        return len(grid) * _face_voxels(grid.block_shape) * FACE_BYTES
    used = [offsets[c] for c in decoder.channels(offsets)]
    z, y, x = grid.block_shape
    planes = (y * x, z * x, z * y)
    per_block = sum(planes[a] * face_depth(used, a) * (2 * LABEL_BYTES + len(used)) for a in range(3))
    return len(grid) * per_block * (2 if method == "seeded_watershed" else 1)


def _datasets(plan: Plan) -> list[str]:
    """The datasets that are predicted: test and validation ones, once each."""
    return list(dict.fromkeys([*plan.datasets_with_role("test"), *plan.datasets_with_role("val")]))


def stage_costs(plan: Plan) -> list[StageCost]:
    """Assemble, predict, decode (with relabel) and evaluate, for every dataset the run builds."""
    settings = plan.settings
    costs = []
    for dataset in settings.datasets:
        voxels = math.prod(plan.shapes[dataset])
        labels = 4 if settings.datasets[dataset].has_labels else 0
        volume_bytes = voxels * (_image_bytes(plan, dataset) + labels)
        costs.append(StageCost("assemble", dataset, voxels, 1, 1, 0, volume_bytes))
    for dataset in _datasets(plan):
        voxels = math.prod(plan.shapes[dataset])
        for predictor in settings.predictors:
            channels = len(settings.predicting_model(predictor).offsets)
            per_voxel = channels * (1 if settings.predict.dtype == "uint8" else 2)
            per_voxel += channels * 2 if settings.predict.mc_dropout_samples > 0 else 0
            grid = plan.predict_grid(dataset)
            jobs = plan.predict_jobs(dataset)
            costs.append(StageCost("predict", f"{predictor}/{dataset}", voxels, len(grid), jobs, 0, voxels * per_voxel))
            if dataset not in plan.datasets_with_role("test"):
                continue
            grid = plan.decode_grid(dataset)
            offsets = [list(o) for o in settings.predicting_model(predictor).offsets]
            segmentation = voxels * np.dtype(segmentation_dtype(plan.shapes[dataset])).itemsize
            for decoder in settings.decoders:
                jobs = 2 * plan.decode_jobs(dataset) + 3  # decode and relabel block jobs; prepare, stitch, publish
                target = f"{predictor}/{decoder}/{dataset}"
                records = _record_bytes(grid, settings.decoders[decoder].method, offsets)
                scratch = voxels * LABEL_BYTES + records
                costs.append(StageCost("decode", target, voxels, len(grid), jobs, scratch, segmentation))
                if settings.datasets[dataset].has_labels:
                    costs.append(StageCost("evaluate", target, voxels, 0, 1, 0, 0))
    return costs


def _size(n_bytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def format_costs(costs: list[StageCost]) -> str:
    """A table of the costs and their totals (disk: peak scratch and all outputs)."""
    header = f"{'stage':<9} {'target':<40} {'voxels':>10} {'blocks':>9} {'jobs':>6} {'scratch':>10} {'output':>10}"
    lines = [header, "-" * len(header)]
    for c in costs:
        lines.append(
            f"{c.stage:<9} {c.target:<40} {c.voxels:>10.3g} {c.blocks:>9} {c.jobs:>6} "
            f"{_size(c.scratch_bytes):>10} {_size(c.output_bytes):>10}"
        )
    jobs = sum(c.jobs for c in costs)
    scratch = max((c.scratch_bytes for c in costs), default=0)
    output = sum(c.output_bytes for c in costs)
    lines.append(f"total: {jobs} jobs, scratch up to {_size(scratch)} at once per decoding, outputs {_size(output)}")
    return "\n".join(lines) + "\n"


def as_dicts(costs: list[StageCost]) -> list[dict[str, object]]:
    return [asdict(c) for c in costs]


__all__ = ["StageCost", "as_dicts", "format_costs", "stage_costs"]
