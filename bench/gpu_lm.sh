#!/usr/bin/env bash
# Language-model presets on a lent GPU, one call: the GPU parity tests, then each preset named
# in $PRESETS (default: lecture zaremba-medium) trained on PTB and evaluated once on test.
# Run directories stay in /tmp (too big to come back); $OUT gets per preset the log (with the
# test result and wall time), metrics.jsonl and the learning curve. PTB travels in
# bench/out/data/ptb (ignored by git):
#   mkdir -p bench/out/data && cp -r ../shared/data/ptb bench/out/data/   # then carry bench/out/data
set -uo pipefail
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 RNNKIT_DATA="$PWD/bench/out/data"
OUT=${OUT:-bench/out}
RUNS=${RUNS:-/tmp/rnnkit-runs}
mkdir -p "$OUT" "$RUNS"
if [ -z "${SKIP_TESTS:-}" ]; then
    nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu-tests.txt"
    timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests >> "$OUT/gpu-tests.txt" 2>&1
    tail -3 "$OUT/gpu-tests.txt"
fi
for preset in ${PRESETS:-lecture zaremba-medium}; do
    start=$(date +%s)
    log="$OUT/$preset.log"
    python3 -m rnnkit train --data ptb --out "$RUNS/$preset" --config "$preset" \
        --train.device=cuda > "$log" 2>&1
    python3 -m rnnkit evaluate "$RUNS/$preset" --split test --json >> "$log" 2>&1
    echo "$preset: $(( $(date +%s) - start )) s" >> "$log"
    tail -3 "$log"
    cp "$RUNS/$preset/metrics.jsonl" "$OUT/$preset-metrics.jsonl"
    cp "$RUNS/$preset/learning_curve.png" "$OUT/$preset-curve.png" 2>/dev/null
done
