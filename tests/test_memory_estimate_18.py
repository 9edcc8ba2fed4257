"""A training run's memory, estimated before anything large is allocated (issue 18, item 1).

The parameter count is the built model's; the estimate follows the batch; a run that does
not fit is refused in one line with the numbers and what to lower, by ``rnnkit train``
under an address-space limit before the model is built (it was torch's "can't allocate
memory" traceback); and one real training's peak memory is within a factor of 2 of it.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.config import load_config
from rnnkit.errors import RnnkitError
from rnnkit.tasks import task_kind
from rnnkit.training import memory
from rnnkit.training.memory import check_memory, estimate, size

FILES = {"train": None, "valid": None, "test": None}
SMALL = ["--model.hidden_size=32", "--model.embed_size=24"]


def _sst(root: Path) -> Path:
    root.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 40), ("dev", 10), ("test", 10)):
        words = [
            " ".join(rng.choice(["the", "film", "good", "bad", "plot"]) for _ in range(5)) for _ in range(n)
        ]
        trees = [
            f"({rng.choice([0, 4])} " + " ".join(f"(2 {w})" for w in line.split()) + ")" for line in words
        ]
        (root / f"{split}.txt").write_text("\n".join(trees) + "\n")
    return root


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("memory")
    (root / "lm").mkdir()
    (root / "lm-wide").mkdir()
    return {
        "lm": write_toy_lm_corpus(root / "lm", vocab=60, length=8, train=200, valid=20),
        "lm-wide": write_toy_lm_corpus(root / "lm-wide", vocab=2000, length=8, train=200, valid=20),
        "tag": write_toy_treebank(root / "treebank"),
        "classify": _sst(root / "sst"),
    }


def load(corpora: dict[str, Path], task: str, *overrides: str, corpus: str | None = None):
    config = load_config(None, [f"--task={task}", *SMALL, *overrides])
    return config, task_kind(task).load_corpus({"data": str(corpora[corpus or task]), **FILES}, config)


@pytest.mark.parametrize(
    ("task", "overrides"),
    [
        ("lm", []),
        ("lm", ["--model.cell=gru", "--model.bidirectional=true", "--model.num_layers=3"]),
        ("lm", ["--model.cell=elman", "--model.head_bias=false", "--model.num_layers=1"]),
        ("lm", ["--model.tie_weights=true", "--model.embed_size=32"]),
        ("lm", ["--model.projection_size=16"]),
        ("lm", ["--model.head=adaptive", "--model.cutoffs=10,30", "--model.div_value=2"]),
        ("tag", []),
        ("tag", ["--model.char_embed=8", "--model.char_hidden=12", "--model.crf=true"]),
        ("classify", ["--model.bidirectional=true", "--model.pooling=max"]),
    ],
)
def test_the_parameter_count_is_the_built_models(corpora, task, overrides):
    config, corpus = load(corpora, task, *overrides)
    model = task_kind(task).build_model(config, corpus)
    built = sum(p.numel() for p in model.parameters())  # a tied matrix once
    assert estimate(config, corpus).parameters == pytest.approx(built, rel=0.01)


def test_the_step_grows_with_the_batch_and_the_parameters_do_not(corpora):
    step = ["--train.bptt=10", "--train.eval_batch_size=1"]
    small = estimate(*load(corpora, "lm", "--train.batch_size=8", *step))
    large = estimate(*load(corpora, "lm", "--train.batch_size=16", *step))
    assert large.parameter_bytes == small.parameter_bytes
    assert large.activation_bytes == pytest.approx(2 * small.activation_bytes, rel=0.01)
    adam = estimate(*load(corpora, "lm", "--train.batch_size=8", *step, "--train.optimizer=adam"))
    assert adam.parameter_bytes > small.parameter_bytes  # Adam's two moments


def test_a_bptt_longer_than_the_stream_counts_the_stream(corpora):
    """bptt = 10**6 on a 1,800-token corpus trains windows of the columns' length, and fits."""
    config, corpus = load(corpora, "lm", "--train.batch_size=4", "--train.bptt=1000000")
    assert f"bptt {corpus.train.numel() // 4}," in estimate(config, corpus).shape
    check_memory(config, corpus)


def test_a_step_that_does_not_fit_is_refused_with_the_numbers(corpora, monkeypatch):
    config, corpus = load(corpora, "lm", "--train.batch_size=4", "--train.bptt=10")
    need = estimate(config, corpus)
    monkeypatch.setattr(memory, "available", lambda: (need.total // 2, "this machine has {} available"))
    with pytest.raises(RnnkitError) as refused:
        check_memory(config, corpus)
    message = str(refused.value)
    assert message.startswith(f"a training step needs about {size(need.total)} (batch 4 x bptt 10, 2 lstm")
    assert f"this machine has {size(need.total // 2)} available: lower " in message
    assert "\n" not in message
    monkeypatch.setattr(memory, "available", lambda: (need.total * 2, "this machine has {} available"))
    check_memory(config, corpus)  # it fits: not a word


@pytest.mark.parametrize(
    ("overrides", "advice"),
    [
        (["--train.batch_size=64", "--train.bptt=20"], "model.head=adaptive"),
        (
            ["--model.hidden_size=600", "--model.embed_size=600", "--train.batch_size=1", "--train.bptt=2"],
            "model.hidden_size",
        ),
    ],
)
def test_the_advice_names_what_dominates(corpora, monkeypatch, overrides, advice):
    config, corpus = load(corpora, "lm", *overrides, corpus="lm-wide")
    monkeypatch.setattr(memory, "available", lambda: (1, "this machine has {} available"))
    with pytest.raises(RnnkitError, match=advice.replace(".", r"\.")):
        check_memory(config, corpus)


def test_what_is_available_here_is_a_positive_number():
    room = memory.available()
    if room is None:
        pytest.skip("no /proc/meminfo here: the check stands aside")
    assert room[0] > 0 and "{}" in room[1]


def _address_space(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_rnnkit_train_refuses_a_model_that_does_not_fit_before_building_it(corpora, tmp_path):
    """A 2 x 4096 LSTM (270M parameters) under a 3 GiB address space: before, torch's
    "DefaultCPUAllocator: can't allocate memory" traceback once the model was half built."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rnnkit", "train", "--data", str(corpora["lm"]), "--out", str(out)]
    command += ["--model.hidden_size=4096", "--model.embed_size=4096", "--no-progress"]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=_address_space(3 * 2**30),
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("rnnkit train: error: a training step needs about ")
    assert "address-space limit (ulimit -v) leaves" in proc.stderr and "model.hidden_size" in proc.stderr
    assert not out.exists()


MEASURE = """
import json, sys
from rnnkit.config import load_config
from rnnkit.tasks import task_kind
from rnnkit.training.loop import fit
from rnnkit.training.memory import estimate

def status(name):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(name + ":"))

config = load_config(None, sys.argv[3:])
data = {"data": sys.argv[1], "train": None, "valid": None, "test": None}
corpus = task_kind(config.task).load_corpus(data, config)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak from here on
before = status("VmRSS")
fit(config, corpus, sys.argv[2], progress=False)
print(json.dumps({"estimate": estimate(config, corpus).total, "measured": status("VmHWM") - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc peak reset")
def test_a_real_training_peak_is_within_a_factor_of_two_of_the_estimate(tmp_path):
    """A language model whose step is mostly its logits (64 x 35 tokens x 3,000 words):
    the training's peak resident memory above the loaded corpus against the estimate."""
    words = [f"w{i}" for i in range(3000)]
    rng = random.Random(0)
    for split, n in (("train", 30000), ("valid", 2000)):
        tokens = [rng.choice(words) for _ in range(n)]
        text = "\n".join(" ".join(tokens[i : i + 20]) for i in range(0, n, 20))
        (tmp_path / f"{split}.txt").write_text(text + "\n")
    settings = ["--model.hidden_size=256", "--model.embed_size=128", "--train.batch_size=64"]
    settings += ["--train.bptt=35", "--train.epochs=1", "--train.threads=1"]
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path), str(tmp_path / "run"), *settings],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.splitlines()[-1])
    ratio = figures["estimate"] / figures["measured"]
    assert 0.5 <= ratio <= 2, figures
