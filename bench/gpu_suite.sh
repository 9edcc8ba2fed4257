#!/usr/bin/env bash
# The GPU performance suite, one call on a lent GPU machine (≤ 5 minutes): rnnkit vs the
# PyTorch recipe at 2x650 and 2x1500, batch 64, fp32 and bf16 autocast, plus bf16's
# validation perplexity against fp32 after the same steps. PTB travels in bench/out/data/ptb
# (ignored by git; without it the suite runs on generated tokens and says so):
#   mkdir -p bench/out/data && cp -r ../shared/data/ptb bench/out/data/   # then carry bench/out/data
set -uo pipefail
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 280 python3 bench/gpu_suite.py --device cuda --json "$OUT/gpu-suite.json" ${GPU_SUITE_ARGS:-} \
    2>&1 | tee "$OUT/gpu-suite.txt"
