# Neuron segmentation of EM volumes: assemble → train → predict → decode → evaluate.
# Run from the repository root:  snakemake --cores 2   (demo)   ·   snakemake --cores 8 --profile slurm
# Stages, targets and layout: README.md. Configuration: config/config.yaml, config/datasets.yaml.

from snakemake.utils import min_version

min_version("9.0")


# The default demo config, unless --configfile names another (Snakemake would merge them).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/assemble.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
