# Validation first (once, before any job), then small named input functions. Result paths
# come from pipeline_lib.paths (spelled once there); rules refer to upstream outputs as
# rules.<name>.output.
import re
import sys
from pathlib import Path


from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import partial_path
from pipeline_lib.paths import (
    block_job_marker,
    evaluation,
    model_file,
    prediction,
    report_file,
    segmentation,
    slices_figure,
    sweep,
    volume,
)
from pipeline_lib.threads import wait_passively
from pipeline_lib.workflow import Plan

# Jobs inherit this environment: idle OpenMP threads sleep instead of spinning (Snakemake
# itself sets OMP_NUM_THREADS and the BLAS thread counts to each job's threads).
wait_passively()

# Validation happens once, here, before any job: the schema (filling the defaults, inside named
# entries and per-method decoder params too), cross-references and file headers
# (pipeline_lib.startup), with one clear message per mistake. Jobs then receive the validated
# config and rebuild their typed settings from it without validating again (job_settings).
try:
    PLAN = Plan.from_config(
        config,
        workflow.configfiles,
        check_networks=workflow.is_main_process,
        network_cache=Path(".snakemake/pipeline/networks_checked.json"),
    )
except UserError as error:
    print(f"Configuration error: {error}", file=sys.stderr)
    sys.exit(1)
config.update(PLAN.job_config())
if workflow.is_main_process:  # once per run, not again in every cluster job
    for warning in PLAN.block_shape_warnings():
        print(f"Warning: {warning}", file=sys.stderr)

SETTINGS = PLAN.settings


def one_of(names):
    """A wildcard constraint matching exactly these names: a target naming anything else
    gets Snakemake's plain "no rule to produce" message instead of a failing input function.
    """
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    dataset=one_of(PLAN.settings.datasets),
    model=one_of(PLAN.settings.predictors),
    decoder=one_of(PLAN.settings.decoders),
    job=r"\d+",


def partial(path):
    """The temporary store a blockwise stage writes before publishing ``path``."""
    return str(partial_path(path))


def all_targets():
    return PLAN.final_targets()


def resources(rule):
    """Cluster resources of a rule from config (memory and runtime grow with each retry)."""
    res = SETTINGS.resources[rule]
    out = {
        "mem_mb": lambda wildcards, attempt: res.mem_mb * attempt,
        "runtime": lambda wildcards, attempt: res.runtime * attempt,
        "cpus_per_task": res.threads,
    }
    if res.gpus:
        out["gpu"] = res.gpus
        if res.gpu_model:
            out["gpu_model"] = res.gpu_model
    if res.slurm_partition:
        out["slurm_partition"] = res.slurm_partition
    if res.slurm_account:
        out["slurm_account"] = res.slurm_account
    if res.slurm_extra:
        out["slurm_extra"] = res.slurm_extra
    return out


def threads(rule):
    return SETTINGS.resources[rule].threads
