"""Hostile command-line values end in one line and exit 2, never a traceback (issue 18).

Each case ran into a Python exception before: ``--temperature=nan`` (torch's "probability
tensor contains either inf, nan"), ``--top-k 0`` / ``-1`` and ``next -k -1`` (IndexError,
"selected index k out of range"), ``--out`` inside /proc or through a symlink loop
(FileNotFoundError / FileExistsError at mkdir), and diagnose sizes that do not fit.
"""

from __future__ import annotations

import pytest

from conftest import assert_one_line_error, run_rnnkit, write_toy_lm_corpus

rnnkit = run_rnnkit


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("hostile"), vocab=8, length=6, train=60, valid=10)
    settings = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    proc = rnnkit("train", "--data", str(root), "--out", str(root / "run"), *settings)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--temperature=nan"], ["--temperature", "nan"]),
        (["--temperature=inf"], ["--temperature"]),
        (["--temperature=0"], ["--temperature"]),
        (["--top-k", "0"], ["--top-k", "at least 1"]),
        (["--top-k=-1"], ["--top-k"]),
        (["--top-p", "0"], ["--top-p", "(0, 1]"]),
        (["--top-p", "1.5"], ["--top-p"]),
        (["--top-p=nan"], ["--top-p"]),
        (["--num", "0"], ["--num"]),
        (["--max-tokens=-3"], ["--max-tokens"]),
    ],
)
def test_generate_refuses_bad_sampling_values(lm_run, args, words):
    assert_one_line_error(rnnkit("generate", str(lm_run), *args), *words)


@pytest.mark.parametrize("k", ["0", "-1"])
def test_next_refuses_a_k_below_one(lm_run, k):
    assert_one_line_error(rnnkit("next", str(lm_run), "w1", f"-k={k}"), "-k")


def test_sampling_still_works_at_the_edges(lm_run):
    proc = rnnkit("generate", str(lm_run), "--top-k", "1", "--top-p", "1", "--temperature", "0.01")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("where", ["proc", "loop", "file"])
def test_an_unusable_out_is_one_line(lm_run, tmp_path, where):
    if where == "proc":
        out = "/proc/rnnkit-test/run"
    elif where == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        out = str(tmp_path / "a" / "run")
    else:
        (tmp_path / "plain").write_text("a file\n")
        out = str(tmp_path / "plain" / "run")
    data = str(lm_run.parent)
    proc = rnnkit("train", "--data", data, "--out", out, "--model.hidden_size=8", "--no-progress")
    assert_one_line_error(proc, "--out")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--hidden", "0"], "--hidden"),
        (["--hidden", "100000000"], "--hidden"),
        (["--layers", "0"], "--layers"),
        (["--sequences", "-2"], "--sequences"),
        (["--length", "1000000"], "--length"),
    ],
)
def test_diagnose_refuses_sizes_that_do_not_fit(tmp_path, args, option):
    assert_one_line_error(rnnkit("diagnose", "--out", str(tmp_path / "d"), *args), option)


def test_bf16_on_a_cpu_that_cannot_run_it_is_one_line(tmp_path):
    """Without AVX-512 bf16, oneDNN has no bf16 LSTM: a RuntimeError in the first step. Where the
    CPU runs it, bf16 trains; where not, it is refused in one line naming the setting."""
    from rnnkit.training.loop import cpu_bf16_problem

    root = write_toy_lm_corpus(tmp_path, vocab=8, length=6, train=60, valid=10)
    settings = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    proc = rnnkit(
        "train", "--data", str(root), "--out", str(tmp_path / "run"), "--device", "cpu",
        "--train.precision=bf16", *settings,
    )  # fmt: skip
    if cpu_bf16_problem() is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert_one_line_error(proc, "train.precision", "bf16", "CPU")


def test_a_failing_nproc_training_is_its_one_line(tmp_path):
    """With --nproc, each training process prints its own error line; torchrun's log line and a
    second rnnkit line came after it (3 lines for one error)."""
    (tmp_path / "sst").mkdir()
    (tmp_path / "sst" / "train.txt").write_text("(3 (2 a) (3 b))\n")
    proc = rnnkit("train", "--data", str(tmp_path / "sst"), "--out", str(tmp_path / "r"), "--nproc", "1")
    assert_one_line_error(proc, "no validation split")


def test_a_device_rnnkit_does_not_run_on_is_one_line(lm_run):
    """``--device meta`` was an internal error (autocast knows no meta device)."""
    assert_one_line_error(rnnkit("score", str(lm_run), "-", "--device", "meta"), "meta", "cpu and cuda")
