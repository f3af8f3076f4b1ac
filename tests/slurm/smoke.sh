#!/usr/bin/env bash
# End-to-end check of the local cluster with the Snakemake SLURM executor:
# a 3-rule toy workflow (plus a GPU rule when the node has GPUs, e.g. after
# `LOCAL_SLURM_FAKE_GPUS=1 tests/slurm/local_slurm.sh up`) must finish, its jobs
# must be COMPLETED in sacct, and the GPU request must reach sbatch.
# Needs: the cluster up, and snakemake + snakemake-executor-plugin-slurm on PATH.
# Usage: tests/slurm/smoke.sh [WORKDIR]   (default: a new /tmp/slurm-smoke.XXXXXX)
set -euo pipefail
die() { echo "smoke: FAIL: $*" >&2; exit 1; }

command -v snakemake >/dev/null || die "snakemake not on PATH"
sinfo -h >/dev/null || die "no cluster: run tests/slurm/local_slurm.sh up"
work=${1:-$(mktemp -d /tmp/slurm-smoke.XXXXXX)}
mkdir -p "$work/profile"
gpus=$(sinfo -h -o %G | grep -o 'gpu:[0-9]*' | head -1 || true)   # e.g. gpu:1, or empty
use_gpu=$([[ -n $gpus ]] && echo 1 || echo 0)

cat >"$work/Snakefile" <<'EOF'
GPU = bool(config.get("gpu", 0))
rule all:
    input: "summary.txt", ["gpu.txt"] if GPU else []
rule make:
    output: "parts/{i}.txt"
    shell: "echo part {wildcards.i} job $SLURM_JOB_ID > {output}"
rule square:
    input: "parts/{i}.txt"
    output: "squares/{i}.txt"
    shell: "cat {input} > {output}"
rule summary:
    input: expand("squares/{i}.txt", i=range(2))
    output: "summary.txt"
    shell: "cat {input} > {output}"
rule gpu:
    output: "gpu.txt"
    resources: gpu=1
    shell: "echo CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"
EOF
# Profile keys = long options without "--"; executor options keep their "slurm-" prefix.
cat >"$work/profile/config.yaml" <<'EOF'
executor: slurm
jobs: 4
default-resources:
  slurm_partition: main
  slurm_account: local
  runtime: 10
  mem_mb: 500
slurm-init-seconds-before-status-checks: 5
EOF

t0=$SECONDS
timeout 600 snakemake --profile "$work/profile" -s "$work/Snakefile" -d "$work" \
  --config gpu="$use_gpu" --verbose >"$work/snakemake.log" 2>&1 ||
  die "snakemake failed or hung (rc $?); see $work/snakemake.log"
echo "smoke: workflow finished in $((SECONDS - t0)) s"

run_id=$(sed -n 's/^SLURM run ID: //p' "$work/snakemake.log")
expected=$((5 + use_gpu))   # make x2, square x2, summary, [gpu]; rule all runs locally
states=$(sacct -n -X -P --name "$run_id" -o State)
[[ $(grep -c COMPLETED <<<"$states") == "$expected" ]] ||
  die "expected $expected COMPLETED jobs in sacct for run $run_id, got: $states"
echo "smoke: $expected jobs COMPLETED in sacct (job name $run_id)"

if ((use_gpu)); then
  grep -q 'sbatch call: .* --gpus=1 ' "$work/snakemake.log" || die "no --gpus=1 in the sbatch call"
  sacct -n -X -P --name "$run_id" -o Comment,AllocTRES | grep -q '^rule_gpu|.*gres/gpu=1' ||
    die "rule gpu has no gres/gpu=1 in sacct AllocTRES"
  echo "smoke: GPU request passed to sbatch and allocated ($(cat "$work/gpu.txt"))"
else
  echo "smoke: node has no GPUs; GPU rule skipped"
fi
echo "smoke: OK ($work)"
