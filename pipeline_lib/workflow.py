"""What a run will compute, derived once from the validated configuration.

:class:`Plan` answers the questions the Snakemake rules ask (which datasets have which role,
which files a dataset reads, how many block jobs a prediction has, which final files to
build) without knowing anything of Snakemake itself. :func:`job_logging` sends a job's
stderr, stdout and log records to its log file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib import paths
from pipeline_lib.blockstore import job_count, stage_grid
from pipeline_lib.config import Settings, job_config, read_yaml, validate_config
from pipeline_lib.errors import ConfigError, UserError
from pipeline_lib.geometry import BlockGrid, reflect_padding_problem
from pipeline_lib.io.sources import source_files
from pipeline_lib.startup import check_run

# Below this many voxels per block job, a job's start-up (seconds: Python, imports, opening
# stores) outweighs its work: a block shape that gives a volume more than MANY_BLOCKS such
# jobs (or blocks under twice the window) is warned about. A few small jobs cost little.
MIN_VOXELS_PER_JOB = 4_000_000
MANY_BLOCKS = 4


@dataclass(frozen=True)
class Plan:
    settings: Settings
    config: dict[str, Any]  # the validated config with every default filled in
    shapes: dict[str, tuple[int, int, int]]  # assembled shape of each selected dataset

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        config_files: Sequence[str | Path] = (),
        check_networks: bool = True,
        network_cache: Path | None = None,
    ) -> Plan:
        """Validate ``config`` and all it refers to, file headers included (:mod:`pipeline_lib.startup`);
        raises :class:`~pipeline_lib.errors.UserError`.

        ``config_files`` (the YAML files Snakemake read ``config`` from) are checked for keys
        written twice, which YAML would silently resolve to the last. ``check_networks``
        builds every model on the meta device (imports torch; the main Snakemake process
        does it, remote jobs need not repeat it), remembering passed entries in ``network_cache``.
        """
        for file in config_files:
            read_yaml(file)
        data, settings = validate_config(config)
        plan = cls(settings, data, check_run(settings, check_networks, network_cache))
        plan._check_windows()
        return plan

    def _check_windows(self) -> None:
        """Every predicted dataset can be padded to every predictor's window (reflect mode)."""
        predict = self.settings.predict
        if predict.padding_mode != "reflect":
            return
        for dataset in {*self.datasets_with_role("val"), *self.datasets_with_role("test")}:
            for model in self.settings.models.values():
                window = predict.window(model)
                problem = reflect_padding_problem(self.shapes[dataset], window)
                if problem:
                    raise ConfigError(
                        f"config key 'predict.padding_mode': dataset '{dataset}' (shape {list(self.shapes[dataset])}) "
                        f"and window {list(window)}: {problem}; use padding_mode 'replicate' or 'constant'"
                    )

    def job_config(self) -> dict[str, Any]:
        """The config the jobs receive: validated here once, rebuilt there without validation
        (:func:`pipeline_lib.config.job_settings`)."""
        return job_config(self.config, self.settings)

    def datasets_with_role(self, role: str) -> list[str]:
        return self.settings.datasets_with_role(role)

    def raw_dataset(self, name: str) -> dict[str, Any]:
        """The dataset's declaration as written (for Snakemake's params-change detection)."""
        datasets: dict[str, Any] = read_yaml(self.config["datasets_file"])["datasets"]
        return dict(datasets[name])

    def source_files(self, name: str) -> list[str]:
        spec = self.settings.datasets[name]
        files: list[str] = []
        for source in (spec.image, spec.labels, spec.mask):
            if source is not None:
                files += [str(p) for p in source_files(source, Path("/"))]
        return files

    def predict_grid(self, dataset: str) -> BlockGrid:
        """The block grid a prediction of ``dataset`` will record (from the dataset's shape)."""
        return stage_grid(self.shapes[dataset], self.settings.predict)

    def decode_grid(self, dataset: str) -> BlockGrid:
        """The block grid a decoding of ``dataset`` will record."""
        return stage_grid(self.shapes[dataset], self.settings.decode)

    def predict_jobs(self, dataset: str) -> int:
        """How many block jobs predict ``dataset``: ``predict.max_jobs`` at most, whatever its size."""
        return job_count(len(self.predict_grid(dataset)), self.settings.predict.max_jobs)

    def decode_jobs(self, dataset: str) -> int:
        """How many block jobs decode (and relabel) ``dataset``: ``decode.max_jobs`` at most."""
        return job_count(len(self.decode_grid(dataset)), self.settings.decode.max_jobs)

    def block_shape_warnings(self) -> list[str]:
        """One line per dataset and block stage whose block shape does not fit it (shown once at
        workflow start): more than :data:`MANY_BLOCKS` block jobs of under
        :data:`MIN_VOXELS_PER_JOB` voxels each, or more than :data:`MANY_BLOCKS` prediction
        blocks that are under twice a model's sliding window along an axis the volume is split in
        (neighbouring blocks then recompute the windows across their faces)."""
        predicted = sorted({*self.datasets_with_role("val"), *self.datasets_with_role("test")})
        warnings = [self._job_size_warning("predict", d, self.predict_grid(d), self.predict_jobs(d)) for d in predicted]
        for dataset in predicted:
            grid = self.predict_grid(dataset)
            for name, model in self.settings.models.items():
                window = self.settings.predict.window(model)
                split = [a for a in range(3) if grid.grid_shape[a] > 1 and grid.block_shape[a] < 2 * window[a]]
                if split and len(grid) > MANY_BLOCKS:
                    warnings.append(
                        f"{self._describe(dataset)}: predict.block_shape {list(grid.block_shape)} is under twice "
                        f"model '{name}''s window {list(window)} along {', '.join('zyx'[a] for a in split)}: "
                        "neighbouring blocks recompute the windows across their faces; raise predict.block_shape there"
                    )
        for dataset in sorted(self.datasets_with_role("test")):
            warnings.append(
                self._job_size_warning("decode", dataset, self.decode_grid(dataset), self.decode_jobs(dataset))
            )
        return [w for w in warnings if w]

    def _describe(self, dataset: str) -> str:
        shape = self.shapes[dataset]
        return f"dataset '{dataset}' ({'x'.join(map(str, shape))} = {math.prod(shape) / 1e6:.3g} Mvoxel)"

    def _job_size_warning(self, stage: str, dataset: str, grid: BlockGrid, jobs: int) -> str:
        per_job = math.prod(self.shapes[dataset]) / jobs
        if jobs <= MANY_BLOCKS or per_job >= MIN_VOXELS_PER_JOB:
            return ""
        max_jobs = self.config[stage]["max_jobs"]
        return (
            f"{self._describe(dataset)}: {stage}.block_shape {list(grid.block_shape)} makes {len(grid)} blocks in "
            f"{jobs} jobs of {per_job / 1e6:.2g} Mvoxel each; under {MIN_VOXELS_PER_JOB / 1e6:g} Mvoxel a job's "
            f"start-up outweighs its work: raise {stage}.block_shape (a multiple of {stage}.chunk_shape) or lower "
            f"{stage}.max_jobs (now {max_jobs})"
        )

    def checkpoints(self, predictor: str) -> list[str]:
        """The checkpoints a predictor (a model or an ensemble) predicts with."""
        return [paths.checkpoint(model) for model in self.settings.members(predictor)]

    def predictor_config(self, predictor: str) -> dict[str, Any]:
        """A model's config entry, or an ensemble's members' entries by name (for Snakemake's
        params-change detection)."""
        if predictor in self.settings.models:
            return dict(self.config["models"][predictor])
        return {model: self.config["models"][model] for model in self.settings.members(predictor)}

    def sweep_inputs(self, model: str, decoder: str) -> list[str]:
        """The sweep result a decoder takes its threshold from (none unless ``tune_threshold``)."""
        if not self.settings.decoders[decoder].tune_threshold:
            return []
        return [paths.sweep(model, decoder, self.datasets_with_role("val")[0], "json")]

    def final_targets(self) -> list[str]:
        """What ``snakemake`` builds by default: every model's curves; for every predictor
        (model or ensemble), per test dataset an evaluation (with labels) or a segmentation
        (without) for every decoder and per validation dataset a threshold sweep of every
        decoder; the report's figures."""
        targets = [paths.model_file(model, "loss.png") for model in self.settings.models]
        for model in self.settings.predictors:
            for decoder in self.settings.decoders:
                for dataset in self.datasets_with_role("test"):
                    if self.settings.datasets[dataset].has_labels:
                        targets.append(paths.evaluation(model, decoder, dataset))
                    else:
                        targets.append(paths.segmentation(model, decoder, dataset))
                for dataset in self.datasets_with_role("val"):
                    targets.append(paths.sweep(model, decoder, dataset, "json"))
        return targets + self.report_targets()

    def report_targets(self) -> list[str]:
        """Figures and tables for ``snakemake --report`` (rules in ``workflow/rules/report.smk``):
        a slice figure per predictor and test dataset, the evaluation table and plot when a test
        dataset has labels, and the provenance page of the run."""
        tests = self.datasets_with_role("test")
        targets = [paths.slices_figure(model, dataset) for model in self.settings.predictors for dataset in tests]
        if any(self.settings.datasets[dataset].has_labels for dataset in tests):
            targets += [paths.report_file(f"evaluation.{ext}") for ext in ("csv", "html", "png")]
        return targets + [paths.report_file("provenance.html")]

    def evaluated_runs(self) -> list[list[str]]:
        """``[predictor, decoder, dataset]`` of every evaluation of the run (test datasets with
        labels); a predictor is a model or an ensemble."""
        return [
            [model, decoder, dataset]
            for model in self.settings.predictors
            for decoder in self.settings.decoders
            for dataset in self.datasets_with_role("test")
            if self.settings.datasets[dataset].has_labels
        ]

    def run_outputs(self) -> list[str]:
        """Every stored output of the run, stage by stage: volumes, predictions, segmentations,
        evaluations (what the report's provenance page reads)."""
        used = {d for role in ("train", "val", "test") for d in self.datasets_with_role(role)}
        tests = self.datasets_with_role("test")
        models, decoders = self.settings.predictors, list(self.settings.decoders)
        return (
            [paths.volume(d) for d in self.settings.datasets if d in used]
            + [paths.prediction(m, d) for m in models for d in tests]
            + [paths.segmentation(m, c, d) for m in models for c in decoders for d in tests]
            + [paths.evaluation(*run) for run in self.evaluated_runs()]
        )


def one_line(error: BaseException, log_file: str | Path) -> str:
    """The terminal's line for a failed job: a user mistake or data fault as its message
    alone, anything else (a bug) by type and first line, pointing to the log's traceback."""
    text = str(error).strip()
    if "Traceback (most recent call last)" in text:  # re-raised from a worker (PyTorch's DataLoader)
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    text = " ".join(text.split())
    if isinstance(error, UserError):
        return f"Error: {text}"
    return f"Error: {type(error).__name__}: {text} (traceback in {log_file})"


@contextlib.contextmanager
def job_logging(log_file: str | Path) -> Iterator[None]:
    """Send stdout, stderr and ``logging`` records of a job to ``log_file``.

    A failing job keeps its traceback in ``log_file`` and prints one line to the terminal
    (:func:`one_line`), then exits with status 1.
    """
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    failure: Exception | None = None
    with open(log_file, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        if "SLURM_JOB_ID" in os.environ:
            logging.info(
                "running as SLURM job %s on %s", os.environ["SLURM_JOB_ID"], os.environ.get("SLURMD_NODENAME", "?")
            )
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                yield
            except Exception as error:
                logging.exception("job failed")
                failure = error
            finally:
                root.removeHandler(handler)
                sys.stdout.flush()
    if failure is not None:
        print(one_line(failure, log_file), file=sys.stderr)
        raise SystemExit(1)
