"""Typed settings built from validated configuration.

Every field is required here: defaults live in the JSON schemas only, and
:func:`pipeline_lib.config.load_config` fills them in before these objects are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Shape3 = tuple[int, int, int]
Offset = tuple[int, int, int]


@dataclass(frozen=True)
class ModelSettings:
    architecture: str
    architecture_params: dict[str, Any]
    offsets: tuple[Offset, ...]
    patch_shape: Shape3
    batch_size: int
    max_steps: int
    learning_rate: float
    precision: Literal["32", "16-mixed", "bf16-mixed"]
    val_every_n_steps: int
    val_batches: int
    num_workers: int
    seed: int
    flip_augment: float
    boundary_weight: float


@dataclass(frozen=True)
class DecoderSettings:
    """One named decoder; ``params`` holds the method's own keys, validated per method by the schema."""

    method: str
    threshold: float
    min_size: int
    small_objects: Literal["background", "merge"]
    params: dict[str, Any]


@dataclass(frozen=True)
class AssembleSettings:
    chunk_shape: Shape3


@dataclass(frozen=True)
class PredictTTASettings:
    flip: tuple[Literal["z", "y", "x"], ...]
    transpose: bool
    combine: Literal["mean", "min", "max"]


@dataclass(frozen=True)
class PredictSettings:
    block_shape: Shape3
    chunk_shape: Shape3
    window_shape: Shape3 | None
    overlap: float
    blend: Literal["gaussian", "constant"]
    padding_mode: Literal["constant", "reflect", "replicate"]
    batch_size: int
    dtype: Literal["uint8", "float16"]
    blocks_per_job: int
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"]
    compile: bool
    tta: PredictTTASettings
    mc_dropout_samples: int


@dataclass(frozen=True)
class DecodeSettings:
    block_shape: Shape3
    chunk_shape: Shape3
    blocks_per_job: int


@dataclass(frozen=True)
class EvaluateSettings:
    block_shape: Shape3


@dataclass(frozen=True)
class ResourceSettings:
    threads: int
    mem_mb: int
    runtime: int
    gpus: int
    gpu_model: str
    slurm_partition: str
    slurm_account: str
    slurm_extra: str


@dataclass(frozen=True)
class SyntheticSpec:
    shape: Shape3
    seed: int
    cell_size: float
    noise: float


@dataclass(frozen=True)
class Roi:
    begin: Shape3
    shape: Shape3


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of the datasets file; source paths are already absolute."""

    name: str
    voxel_size: tuple[float, float, float]
    roles: tuple[str, ...]
    image: dict[str, Any] | None
    labels: dict[str, Any] | None
    mask: dict[str, Any] | None
    synthetic: SyntheticSpec | None
    roi: Roi | None

    @property
    def has_labels(self) -> bool:
        return self.synthetic is not None or self.labels is not None


@dataclass(frozen=True)
class Settings:
    """The whole run: what :func:`pipeline_lib.config.load_config` returns."""

    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSettings]
    decoders: dict[str, DecoderSettings]
    assemble: AssembleSettings
    predict: PredictSettings
    decode: DecodeSettings
    evaluate: EvaluateSettings
    resources: dict[str, ResourceSettings]

    def datasets_with_role(self, role: str) -> list[str]:
        return [name for name, spec in self.datasets.items() if role in spec.roles]
