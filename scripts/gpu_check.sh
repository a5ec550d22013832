#!/usr/bin/env bash
# The GPU path in one command of at most 9 minutes, run from the repository root of a checkout
# that holds .whl/ and .gpu/ (make gpu-wheels gpu-data): install the wheels beside the image's
# torch, print the machine, smoke-test training on CUDA (kill and resume included), run the GPU rows
# of the benchmarks, then the value experiment with the time left. Results: $OUT (or --out DIR,
# else gpu-check-out/): gpu-check.md and .json, log.txt, bench.json, value-report.md,
# value-summary.json, value-evidence.png. See scripts/gpu/__init__.py.
#
#   scripts/gpu_check.sh [--out DIR] [--phases env,smoke,bench,value]
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 scripts/gpu_check.sh    # the dry run, toy sizes, on the CPU
#
# GPU_CHECK_SECONDS (default 540) is the budget of the whole command; every phase has its own time
# limit inside it, and the results so far are written after each phase.
set -uo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_START="${GPU_CHECK_START:-$(date +%s.%N)}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
budget="${GPU_CHECK_SECONDS:-540}"
if [ "${GPU_CHECK_DEVICE:-cuda}" = cpu ]; then
    python="${GPU_CHECK_PYTHON:-.venv/bin/python}"   # the dry run prepares the carry with the project's venv
else
    python="${GPU_CHECK_PYTHON:-python3}"            # the image's Python, with its torch
fi
echo "gpu_check: $($python --version 2>&1) at $(command -v "$python" || echo "$python"), budget ${budget} s"
exec timeout --kill-after=5 "$(( ${budget%.*} + 20 ))" "$python" -m scripts.gpu.check "$@"
