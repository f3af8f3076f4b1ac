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
class LossSettings:
    name: Literal["bce", "balanced_bce", "dice", "mse"]
    weight: float
    pos_weight: float


@dataclass(frozen=True)
class TargetSettings:
    type: Literal["affinity", "boundary", "foreground", "distance", "lsd"]
    weight: float
    losses: tuple[LossSettings, ...]
    distance_scale: float
    lsd_sigma: float
    lsd_downsample: int


@dataclass(frozen=True)
class OptimizerSettings:
    name: Literal["adam", "adamw", "sgd"]
    weight_decay: float
    momentum: float


@dataclass(frozen=True)
class ScheduleSettings:
    name: Literal["constant", "cosine", "step", "plateau"]
    warmup_steps: int
    min_lr_ratio: float
    step_size: int
    gamma: float
    patience: int


@dataclass(frozen=True)
class DeepSupervisionSettings:
    enabled: bool
    weights: tuple[float, ...]
    logit_clamp: float


@dataclass(frozen=True)
class NetworkSettings:
    """What a model's network is built from. A training checkpoint's saved hyperparameters
    hold these keys as plain data, so ``build(NetworkSettings, hyperparameters)``
    (:func:`pipeline_lib.config.build`) rebuilds them for inference."""

    architecture: str
    architecture_params: dict[str, Any]
    offsets: tuple[Offset, ...]
    targets: tuple[TargetSettings, ...]
    deep_supervision: DeepSupervisionSettings


@dataclass(frozen=True)
class SamplingSettings:
    min_foreground: float
    max_attempts: int
    cache_mb: float


@dataclass(frozen=True)
class Chance:
    p: float


@dataclass(frozen=True)
class TransposeAug:
    """``axes`` "yx": swap y and x; "zyx": any of the five non-identity orders of z, y, x
    (isotropic data, cube patches)."""

    p: float
    axes: Literal["yx", "zyx"]


@dataclass(frozen=True)
class ElasticAug:
    p: float
    sigma: float
    magnitude: float


@dataclass(frozen=True)
class ShiftAug:
    p: float
    max_shift: int


@dataclass(frozen=True)
class SectionsAug:
    p: float
    max_sections: int


@dataclass(frozen=True)
class BlurAug:
    p: float
    kernel_size: int


@dataclass(frozen=True)
class CutBlurAug:
    p: float
    max_fraction: float
    factor: int


@dataclass(frozen=True)
class CutNoiseAug:
    p: float
    max_fraction: float
    std: float


@dataclass(frozen=True)
class RangeAug:
    p: float
    range: tuple[float, float]


@dataclass(frozen=True)
class NoiseAug:
    p: float
    std: float


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentations (see the schema's ``augment`` entry); each has a probability ``p``."""

    flip: Chance
    transpose: TransposeAug
    rot90: Chance
    elastic: ElasticAug
    misalignment: ShiftAug
    missing_section: SectionsAug
    motion_blur: BlurAug
    cut_blur: CutBlurAug
    cut_noise: CutNoiseAug
    gamma: RangeAug
    contrast: RangeAug
    brightness: RangeAug
    noise: NoiseAug
    batched: bool


@dataclass(frozen=True)
class ModelSettings:
    """One model entry; ``__post_init__`` checks the rules the schema cannot express."""

    architecture: str
    architecture_params: dict[str, Any]
    offsets: tuple[Offset, ...]
    patch_shape: Shape3
    batch_size: int
    max_steps: int
    max_minutes: float
    learning_rate: float
    precision: Literal["32", "16-mixed", "bf16-mixed"]
    val_every_n_steps: int
    val_batches: int
    resume_every_n_steps: int
    num_workers: int | Literal["auto"]
    seed: int
    label_zero: Literal["boundary", "ignore"]
    boundary_weight: float
    targets: tuple[TargetSettings, ...]
    optimizer: OptimizerSettings
    lr_schedule: ScheduleSettings
    gradient_clip: float
    require_validation: bool
    deep_supervision: DeepSupervisionSettings
    sampling: SamplingSettings
    augment: AugmentSettings

    @property
    def network(self) -> NetworkSettings:
        """What the model's network is built from (saved with its trained weights)."""
        return NetworkSettings(
            self.architecture, self.architecture_params, self.offsets, self.targets, self.deep_supervision
        )

    def __post_init__(self) -> None:
        from pipeline_lib.errors import ConfigError

        kinds = [t.type for t in self.targets]
        if kinds[0] != "affinity" or kinds.count("affinity") != 1:
            raise ConfigError(f"model key 'targets': one 'affinity' target, listed first, is needed; got {kinds}")
        if len(set(kinds)) != len(kinds):
            raise ConfigError(f"model key 'targets': each target type may appear once; got {kinds}")
        for t in self.targets:
            if t.type == "lsd" and any(s % t.lsd_downsample for s in self.patch_shape):
                raise ConfigError(
                    f"model key 'patch_shape': {list(self.patch_shape)} must be divisible by the lsd "
                    f"target's lsd_downsample ({t.lsd_downsample})"
                )
        if self.augment.transpose.axes == "zyx" and self.augment.transpose.p and len(set(self.patch_shape)) != 1:
            raise ConfigError(
                "model key 'augment.transpose.axes': 'zyx' permutes all three axes and needs a cube "
                f"patch_shape, got {list(self.patch_shape)}"
            )
        if self.lr_schedule.name == "plateau" and self.lr_schedule.warmup_steps:
            raise ConfigError("model key 'lr_schedule.warmup_steps': warm-up is not supported with 'plateau'")


@dataclass(frozen=True)
class DecoderSettings:
    """One named decoder; ``params`` holds the method's own keys, validated per method by the schema."""

    method: str
    threshold: float
    tune_threshold: bool
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
    batch_size: int | Literal["auto"]
    memory_format: Literal["auto", "contiguous", "channels_last_3d"]
    dtype: Literal["uint8", "float16"]
    max_jobs: int
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"]
    compile: bool
    tta: PredictTTASettings
    mc_dropout_samples: int

    def window(self, model: ModelSettings) -> Shape3:
        """The sliding window: ``window_shape``, or the model's patch shape when null."""
        return self.window_shape if self.window_shape is not None else model.patch_shape


@dataclass(frozen=True)
class DecodeSettings:
    block_shape: Shape3
    chunk_shape: Shape3
    max_jobs: int


@dataclass(frozen=True)
class EvaluateSettings:
    block_shape: Shape3
    sweep_thresholds: dict[str, tuple[float, ...]]  # grid per decoder method
    sweep_criterion: Literal["arand", "voi"]
    sweep_tolerance: float


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
class EnsembleSettings:
    """A named checkpoint ensemble: the best checkpoints of ``models`` predict together."""

    models: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    """The whole run: what :func:`pipeline_lib.config.load_config` returns.

    A *predictor* is what a prediction is named after (``results/predictions/{predictor}``):
    a model, or an ensemble of models.
    """

    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSettings]
    ensembles: dict[str, EnsembleSettings]
    decoders: dict[str, DecoderSettings]
    assemble: AssembleSettings
    predict: PredictSettings
    decode: DecodeSettings
    evaluate: EvaluateSettings
    resources: dict[str, ResourceSettings]

    def datasets_with_role(self, role: str) -> list[str]:
        return [name for name, spec in self.datasets.items() if role in spec.roles]

    @property
    def predictors(self) -> list[str]:
        """Models, then ensembles: each predicts every test dataset and is decoded and evaluated."""
        return [*self.models, *self.ensembles]

    def members(self, predictor: str) -> tuple[str, ...]:
        """The models whose checkpoints a predictor uses: the model itself, or the ensemble's members."""
        if predictor in self.ensembles:
            return self.ensembles[predictor].models
        if predictor in self.models:
            return (predictor,)
        raise KeyError(f"'{predictor}' is neither a model nor an ensemble")

    def predicting_model(self, predictor: str) -> ModelSettings:
        """Model settings a predictor predicts with (ensemble members share offsets and patch shape)."""
        return self.models[self.members(predictor)[0]]
