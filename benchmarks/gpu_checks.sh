#!/usr/bin/env bash
# The standing GPU checks, as one script for a lent GPU machine (run from the repository root):
#   bash benchmarks/gpu_checks.sh OUT_DIR [COMFYUI_PATH]
# 1. every gpu-marked test (kernels in bf16, the CUDA-graph inner loop, and, with a ComfyUI checkout, the
#    workflow on CUDA with --novram/--lowvram), JUnit report with the device name in OUT_DIR;
# 2. the full-size speed benchmark (table and JSON named after the device) into OUT_DIR.
# Copy what is worth keeping into benchmarks/results/ afterwards; nothing here writes over tracked files.
set -uo pipefail
out="${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR [COMFYUI_PATH]}"
mkdir -p "$out"
[ -n "${2:-}" ] && export COMFYUI_PATH="$2"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$out/device.txt" || exit 1
status=0
python -m pytest -m gpu -rA --junitxml="$out/gpu_tests.xml" 2>&1 | tee "$out/gpu_tests.txt" || status=1
python -m comfyui_tmd.benchmarks.gpu_speed --out "$out" 2>&1 | tee "$out/gpu_speed.txt" || status=1
exit "$status"
