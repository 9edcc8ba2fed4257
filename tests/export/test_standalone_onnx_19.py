"""The README's standalone ONNX script (issue 19, item 2): it runs with ``onnxruntime`` and
``numpy`` (and ``tokenizers`` for a BPE model) alone, never importing ``torch`` or ``rnnkit``,
and prints the figures ``rnnkit score`` prints.

The script is taken from README.md as written (the Python block that imports onnxruntime)
and run in a subprocess under a guard: an import finder that refuses ``torch`` and
``rnnkit`` (and their submodules), and a check at the end that neither is in
``sys.modules``.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rnnkit
from rnnkit.cli.main import main
from rnnkit.export import export_onnx, read_metadata

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

README = Path(__file__).resolve().parents[2] / "README.md"
RNNKIT = Path(sys.executable).with_name("rnnkit")
WORDS = ["the", "stock", "market", "fell", "company", "said", "it", "."]  # the script's, but "rose"
TINY = ["--model.hidden_size=16", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--train.bptt=8", "--no-progress"]

GUARD = """
import importlib.abc, json, sys

FORBIDDEN = ("torch", "rnnkit")
tried = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            tried.append(name)
            raise ModuleNotFoundError(f"the standalone script imported {name}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
script = open(sys.argv[1], encoding="utf-8").read()
exec(compile(script, "README.md", "exec"), {"__name__": "__main__"})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print("GUARD", json.dumps({"tried": tried, "loaded": loaded}))
"""


def readme_script() -> str:
    """The README's Python block that imports onnxruntime (exactly one)."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    found = [b for b in blocks if "import onnxruntime" in b]
    assert len(found) == 1, f"expected one standalone ONNX script in README.md, found {len(found)}"
    return found[0]


def run_script(folder: Path, script: str) -> tuple[list[tuple[float, float, str]], dict]:
    """Run ``script`` in ``folder`` under the guard: its printed ``(logprob, ppl, line)`` and
    what the guard saw (modules tried and loaded)."""
    (folder / "script.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", GUARD, "script.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    *printed, guard = proc.stdout.splitlines()
    assert guard.startswith("GUARD ")
    rows = []
    for row in printed:
        match = re.fullmatch(r"logprob (\S+)\tppl (\S+)\t(.*)", row)
        assert match, row
        rows.append((float(match[1]), float(match[2]), match[3]))
    return rows, json.loads(guard[len("GUARD ") :])


def write_corpus(root: Path) -> Path:
    root.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 150), ("valid", 20)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Word-level and BPE (with a learned initial state) language models trained on the
    script's words, each exported as ``small.onnx`` (and the word model as
    ``small-int8.onnx``) in a folder of its own."""
    root = tmp_path_factory.mktemp("standalone")
    corpus = write_corpus(root / "corpus")
    out = {}
    bpe = ["--data.level=bpe", "--data.max_size=300", "--model.learn_initial_state=true"]
    for name, options in (("word", []), ("bpe", bpe)):
        run = root / f"{name}-run"
        assert main(["train", "--data", str(corpus), "--out", str(run), *TINY, *options]) == 0
        folder = root / name
        folder.mkdir()
        trained = rnnkit.load(run)
        export_onnx(trained, folder / "small.onnx")
        if name == "word":
            export_onnx(trained, folder / "small-int8.onnx", quantize="int8")
        out[name] = (run, folder)
    return out


def test_the_script_scores_as_rnnkit_score_without_torch_or_rnnkit(exported):
    run, folder = exported["word"]
    rows, guard = run_script(folder, readme_script())
    assert guard == {"tried": [], "loaded": []}
    assert len(rows) >= 2
    stdin = "".join(line + "\n" for _, _, line in rows)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(RNNKIT), "score", str(run), "-", "--json"], input=stdin, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    scored = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(s["oov"] for s in scored)  # "rose" is read as <unk> by both
    for (logprob, ppl, _), own in zip(rows, scored, strict=True):
        assert logprob == pytest.approx(own["logprob"], abs=1e-4)
        assert ppl == pytest.approx(own["ppl"], rel=1e-4)


def test_the_script_reads_a_bpe_model_with_tokenizers_alone(exported):
    run, folder = exported["bpe"]
    rows, guard = run_script(folder, readme_script())
    assert guard == {"tried": [], "loaded": []}
    own = rnnkit.load(run).score([line for _, _, line in rows])
    assert own[0]["tokens"][0].startswith("the") and len(own[0]["tokens"]) > 4  # subwords, then a newline
    assert read_metadata(onnx.load(str(folder / "small.onnx")))["state"]["initial"] == "learned"
    for (logprob, ppl, _), figures in zip(rows, own, strict=True):
        assert logprob == pytest.approx(figures["logprob"], abs=1e-4)
        assert ppl == pytest.approx(figures["ppl"], rel=1e-4)


def test_the_int8_file_runs_the_same_script_to_rounding(exported):
    _, folder = exported["word"]
    script = readme_script()
    assert script.count('"small.onnx"') == 1
    exact, _ = run_script(folder, script)
    rounded, guard = run_script(folder, script.replace('"small.onnx"', '"small-int8.onnx"'))
    assert guard == {"tried": [], "loaded": []}
    gaps = [abs(a[0] - b[0]) for a, b in zip(exact, rounded, strict=True)]
    assert 0 < max(gaps) < 0.05 and all(math.isfinite(b[1]) for b in rounded)


def test_the_guard_catches_a_script_that_imports_torch(tmp_path):
    """The guard must be able to fail: a script importing torch (or rnnkit) dies of it."""
    for module in ("torch.nn", "rnnkit.export"):
        (tmp_path / "script.py").write_text(f"import {module}\n")
        proc = subprocess.run(
            [sys.executable, "-c", GUARD, "script.py"], cwd=tmp_path, capture_output=True, text=True
        )
        top = module.split(".")[0]
        assert proc.returncode != 0 and f"the standalone script imported {top}" in proc.stderr
