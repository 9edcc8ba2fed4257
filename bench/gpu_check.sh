#!/usr/bin/env bash
# The prepared GPU check, one call on a lent GPU machine (python3 there has torch, pytest,
# hypothesis): GPU parity tests, then the cell benchmark on CUDA. Results land in $OUT.
#   GPU_BENCH_ARGS="--hidden 200 --cases lstm gru" bash bench/gpu_check.sh   # a shorter bench
set -uo pipefail
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/layers > "$OUT/gpu-tests.txt" 2>&1
grep -E "Greatest|^FAILED|passed|failed|Warning" "$OUT/gpu-tests.txt" | sort | uniq -c | head -30
timeout 300 python3 bench/cells.py --device cuda --repeats 5 --seconds 0.2 \
    --json "$OUT/cells-cuda.json" ${GPU_BENCH_ARGS:---dispatch} 2>&1 | tee "$OUT/cells-cuda.txt"
