#!/usr/bin/env bash
# The CUDA checks and figures, as one prepared script for a machine with a GPU (the device tool's
# `run`): the GPU tests, then the benchmark on CUDA. Results land in $OUT (or benchmarks/results).
#
#   bash benchmarks/cuda_check.sh            # tests + MiniLM (3 rounds) + the 1.1B checkpoint (1 round)
#   bash benchmarks/cuda_check.sh --quick    # tests + MiniLM only
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/cuda-gpu.txt"
python -m pytest -q tests/test_cuda.py tests/test_backends.py 2>&1 | tee "$out/cuda-tests.log"
python benchmarks/run.py --device cuda --repeat 3 --only minilm --results "$out" 2>&1 | tee "$out/cuda-minilm.log"
if [[ "${1:-}" != "--quick" ]]; then
    python benchmarks/run.py --device cuda --repeat 1 --only llama1b --results "$out" 2>&1 | tee "$out/cuda-llama1b.log"
fi
