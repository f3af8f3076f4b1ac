#!/usr/bin/env bash
# The checks to run on a CUDA machine, in one go and in order of importance:
#   env                   the card, driver, torch and CPU count;
#   gpu_throughput        training and inference voxels/s of the default model, fp32 vs bf16;
#   cuda_tests            tests/training and tests/inference: training tests train on the GPU
#                         (Lightning's accelerator "auto"), predict_volume/predict_blocks tests
#                         predict on it (device "auto") against MONAI on the CPU;
#   bench_decode          CC decoding with 2, 4, 8 and 16 worker processes (CPU figures);
#   gpu_throughput_large  the same throughput figures with 32x128x128 windows.
# Each step has its own time limit (520 s in all), writes OUT_DIR/<step>.log and prints its last
# lines, so a step that fails or runs out of time leaves the others' figures.
# Usage: benchmarks/gpu_checks.sh OUT_DIR  (from the repository root; PYTHON picks the interpreter)
set -u
out=${1:?usage: benchmarks/gpu_checks.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "rc=$?"
    grep -v "%|" "$out/$name.log" | tail -n 12 # progress bars left out
}

step env 30 bash -c 'nvidia-smi; nproc; "$0" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"' "$py"
step gpu_throughput 120 "$py" benchmarks/gpu_throughput.py
step cuda_tests 120 "$py" -m pytest tests/training tests/inference -q --no-cov -p no:cacheprovider
step bench_decode 150 "$py" benchmarks/bench_decode.py --skip-waterz --workers 2 4 8 16
step gpu_throughput_large 100 "$py" benchmarks/gpu_throughput.py --patch 32 128 128 --train-batch 4
echo "== done ($(date +%T))"
