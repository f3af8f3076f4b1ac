#!/usr/bin/env bash
# The GPU checks of issue 19 on a one-GPU node, in at most 7 minutes: one JSON line per figure
# on stdout (full logs in OUT_DIR/<step>.log).
#
# Usage, from the repository root:
#   benchmarks/gpu_checks.sh OUT_DIR [--allow-cpu] [--skip-tests]
#     PYTHON        the interpreter (default python3); it needs torch and Lightning
#     --allow-cpu   run without CUDA at tiny sizes: a smoke test of this script, not figures
#     --skip-tests  leave out the test step
#
# Wheels: a node whose Python has torch and Lightning but not the project's other dependencies
# gets them from wheel files placed beside this script (benchmarks/*.whl): for each of these
# distributions whose module does not import, `pip install --no-index --find-links benchmarks/`
# installs it from those wheels (the ones missing on the H200 node where issue 19 was measured):
#   monai zarr numcodecs google-crc32c donfig crc32c connected-components-3d fastremap
#   jsonschema referencing rpds-py jsonschema-specifications
#
# Steps, each with its own time limit (415 s in all), so a step that fails or runs out of time
# leaves the others' figures:
#   env         {"name": "env"}: card, driver, torch, CUDA, CPUs                         20 s
#   wheels      {"name": "wheels"}: what was missing and installed                       45 s
#   infer       infer_<window>_<fp32|bf16>: Mvoxel/s through predict_blocks (zarr in,
#               uint8 zarr out) for 16x64x64 and 32x128x128 windows, with GPU use       150 s
#   train       train_loader / train_on_device: steps/s of train_model with the real
#               loader vs the same model on batches already on the GPU                  100 s
#   cuda_tests  {"name": "cuda_tests"}: pytest tests/training tests/inference summary    100 s
set -u
out=${1:?usage: benchmarks/gpu_checks.sh OUT_DIR [--allow-cpu] [--skip-tests]}
shift
allow_cpu="" skip_tests=""
for arg in "$@"; do
    case $arg in
    --allow-cpu) allow_cpu=--allow-cpu ;;
    --skip-tests) skip_tests=1 ;;
    *) echo "unknown option $arg" >&2 && exit 2 ;;
    esac
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)

# step NAME LIMIT COMMAND...: run it with a time limit into OUT_DIR/NAME.log, print its JSON lines
# and, when it failed, a JSON line saying so.
step() {
    local name=$1 limit=$2 rc
    shift 2
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    grep '^{' "$out/$name.log"
    if [ $rc -ne 0 ]; then
        echo "{\"name\": \"$name\", \"rc\": $rc, \"timed_out\": $([ $rc -eq 124 ] && echo true || echo false), \"log\": \"$out/$name.log\"}"
    fi
    return 0
}

step env 20 "$py" -c '
import json, os, shutil, subprocess, torch
smi = None
if shutil.which("nvidia-smi"):
    query = "--query-gpu=name,driver_version,memory.total,utilization.gpu"
    smi = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
print(json.dumps({"name": "env", "card": card, "nvidia_smi": smi, "torch": torch.__version__,
                  "cuda": torch.version.cuda, "cpus": len(os.sched_getaffinity(0))}))'

step wheels 45 "$py" -c '
import importlib, json, subprocess, sys
modules = {"monai": "monai", "zarr": "zarr", "numcodecs": "numcodecs", "google_crc32c": "google-crc32c",
           "donfig": "donfig", "crc32c": "crc32c", "cc3d": "connected-components-3d", "fastremap": "fastremap",
           "jsonschema": "jsonschema", "referencing": "referencing", "rpds": "rpds-py",
           "jsonschema_specifications": "jsonschema-specifications"}
missing = []
for module, dist in modules.items():
    try:
        importlib.import_module(module)
    except ImportError:
        missing.append(dist)
rc = 0
if missing:
    rc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", sys.argv[1], *missing]).returncode
print(json.dumps({"name": "wheels", "missing": missing, "installed": rc == 0}))
sys.exit(rc)' "$here"

step infer 150 "$py" "$here/gpu_throughput.py" --only infer $allow_cpu
step train 100 "$py" "$here/gpu_throughput.py" --only train $allow_cpu

if [ -z "$skip_tests" ]; then
    timeout 100 "$py" -m pytest tests/training tests/inference -q --no-cov -p no:cacheprovider >"$out/cuda_tests.log" 2>&1
    rc=$?
    "$py" -c '
import json, sys, torch
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
summary = next((l.strip("= ") for l in reversed(lines) if " in " in l and ("passed" in l or "failed" in l or "error" in l)), None)
print(json.dumps({"name": "cuda_tests", "cuda": torch.cuda.is_available(), "rc": int(sys.argv[2]),
                  "timed_out": sys.argv[2] == "124", "summary": summary}))' "$out/cuda_tests.log" "$rc"
fi
