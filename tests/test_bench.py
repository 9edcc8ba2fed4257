"""The benchmark scripts' contracts: a device that is not here is skipped with no figure, and
the GPU suite (run for real only on a lent GPU) works end to end as a CPU dry run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.training.loop import cpu_bf16_problem

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: nothing to skip")
@pytest.mark.parametrize("script", ["quick.py", "gpu_suite.py"])
def test_missing_device_is_skipped_without_a_figure(script, tmp_path):
    out = tmp_path / "result.json"
    done = run_script(script, "--device", "cuda", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped: device 'cuda' is not available" in done.stdout
    assert "tok" not in done.stdout and "GFLOP" not in done.stdout
    assert not out.exists()


def test_gpu_suite_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu-suite.json"
    done = run_script(
        "gpu_suite.py",
        *("--device", "cpu", "--data", str(tmp_path / "no-ptb"), "--hidden", "16", "--batch", "4"),
        *("--windows", "2", "--steps", "3", "--valid-tokens", "2000", "--repeats", "2", "--seconds", "0.01"),
        *("--json", str(out)),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "generated tokens" in done.stdout  # no PTB there: it says what it ran on
    payload = json.loads(out.read_text())
    speed, quality = payload["rows"]
    tokens_per_s = speed["tokens_per_s"]
    keys = ["rnnkit fp32 / recipe fp32", "rnnkit bf16 / recipe fp32", "rnnkit bf16 / recipe bf16"]
    if cpu_bf16_problem():  # no bf16 LSTM on this CPU (no AVX-512 bf16): fp32 only, and said
        assert "bf16 skipped: this CPU cannot run it" in done.stdout
        assert set(tokens_per_s) == {"rnnkit fp32", "recipe fp32"} and "bf16" not in quality
        keys = keys[:1]
    else:
        assert set(tokens_per_s) == {"rnnkit fp32", "rnnkit bf16", "recipe fp32", "recipe bf16"}
    for key in keys:
        assert speed[key]["min"] > 0
        # with two repeats a variant's median time is the mean of its two, so the ratio of the
        # speeds (tokens/s) is the mediant of the two per-repeat ratios: between their min and max.
        # A ratio the wrong way round (base / ours) or of other variants lands outside (unless ~1).
        ours, base = key.split(" / ")
        speedup = tokens_per_s[ours] / tokens_per_s[base]
        assert speed[key]["min"] * (1 - 1e-9) <= speedup <= speed[key]["max"] * (1 + 1e-9), (key, speedup)
    assert all(v > 0 for v in speed["tokens_per_s"].values())
    assert math.isfinite(quality["fp32"]["valid_ppl"])
    if "bf16" in quality:
        fp32, bf16 = quality["fp32"]["valid_ppl"], quality["bf16"]["valid_ppl"]
        assert math.isfinite(bf16)
        assert quality["bf16 vs fp32"] == pytest.approx(bf16 / fp32 - 1)
