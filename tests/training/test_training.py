"""Training end to end on generated text: it learns, checkpoints load back, the CLI works."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm import LanguageModelling, generate, next_distribution, score_line, score_lines
from rnnkit.training.loop import Cursor, History, fit, make_optimizer, train_epoch
from rnnkit.training.run import load
from rnnkit.training.schedules import cosine_factor, plateau_lr, zaremba_lr


@pytest.fixture
def corpus_dir(tmp_path):
    """A tiny language with structure: 'a b c d' repeated with random starts."""
    g = torch.Generator().manual_seed(0)
    words = ["a", "b", "c", "d", "e", "f"]
    for split, lines in (("train", 300), ("valid", 40), ("test", 40)):
        rows = []
        for _ in range(lines):
            start = int(torch.randint(6, (), generator=g))
            rows.append(" ".join(words[(start + i) % 6] for i in range(6)))
        (tmp_path / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_schedules():
    assert [zaremba_lr(1.0, e, 4, 0.5) for e in (1, 4, 5, 6)] == [1.0, 1.0, 0.5, 0.25]
    assert plateau_lr(20.0, [5.0, 4.0], 0.25) == 20.0
    assert plateau_lr(20.0, [5.0, 4.0, 4.5], 0.25) == 5.0


def test_cosine_factor_by_hand():
    assert [cosine_factor(s, 4) for s in range(6)] == pytest.approx(
        [1.0, 0.5 + 0.5**1.5, 0.5, 0.5 - 0.5**1.5, 0, 0]
    )
    # a warm-up of 2 steps: 1/2, 1, then the half cosine over the 4 steps left
    assert [cosine_factor(s, 6, 2) for s in range(7)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.5 + 0.5**1.5, 0.5, 0.5 - 0.5**1.5, 0]
    )


def test_a_cosine_run_steps_at_the_cosine_rates(corpus_dir, tmp_path, capsys):
    """What the optimizer really used at each step (read by a hook on every optimizer's
    step, not from rnnkit's log) is the warm-up then the half cosine over both epochs; the
    log's step lines say the same rates."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    used: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"])
    )
    options = ["--model.hidden_size=16", "--model.embed_size=16", "--train.epochs=2", "--train.lr=0.5"]
    options += [
        "--train.bptt=10",
        "--train.batch_size=8",
        "--train.schedule=cosine",
        "--train.warmup_steps=3",
    ]
    try:
        fit(
            load_config(None, [*options, "--train.log_every=1"]),
            load_corpus(locate(corpus_dir)),
            tmp_path / "run",
        )
    finally:
        handle.remove()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    per_epoch = next(e["step"] for e in lines if "epoch" in e)
    total = 2 * per_epoch
    assert len(used) == total > 6
    assert used == pytest.approx([0.5 * cosine_factor(s, total, 3) for s in range(total)], rel=1e-12)
    assert used[:3] == pytest.approx([0.5 / 3, 1.0 / 3, 0.5]) and used[-1] < 0.5 * 1e-2
    logged = {e["step"]: e["lr"] for e in lines if "train_loss" in e and "epoch" not in e}
    assert all(logged[s] == pytest.approx(used[s - 1], rel=1e-12) for s in logged) and len(logged) == total
    epochs = [e for e in lines if "epoch" in e]  # an epoch's line: the rate of its last step
    assert [e["lr"] for e in epochs] == pytest.approx([used[e["step"] - 1] for e in epochs], rel=1e-12)
    said = capsys.readouterr()
    lines_shown = (said.out + said.err).splitlines()
    shown = [float(line.split("| lr ")[1].split()[0]) for line in lines_shown if "| train " in line]
    assert shown == pytest.approx([used[e["step"] - 1] for e in epochs], rel=1e-3)  # the user's lines too


def test_fit_learns_the_language_and_reloads(corpus_dir, tmp_path):
    config = load_config(
        None,
        [
            "--model.hidden_size=32",
            "--model.embed_size=32",
            "--train.epochs=4",
            "--train.lr=2",
            "--train.bptt=10",
            "--train.batch_size=8",
            "--train.clip_norm=1",
        ],
    )
    corpus = load_corpus(locate(corpus_dir))
    run = tmp_path / "run"
    summary = fit(config, corpus, run, progress=False)
    # After the first word each next word is determined: perplexity far below the 7 tokens' uniform.
    assert summary["test"]["ppl"] < 2.5
    _, vocab, saved, _ = load(run)
    assert saved == config and len(vocab) == len(corpus.vocab)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in lines if "epoch" in e]
    assert len(epochs) == 4 and epochs[-1]["valid_ppl"] < epochs[0]["valid_ppl"]


def test_adaptive_runs_saved_before_the_head_bias_still_load(corpus_dir, tmp_path):
    """Before model.div_value existed the adaptive head had no bias, whatever model.head_bias
    said: such a run's saved settings (no div_value, head_bias true) load the network its
    checkpoints hold, and give the same log-probabilities."""
    settings = ["--model.hidden_size=16", "--model.embed_size=16", "--model.head=adaptive"]
    settings += ["--model.cutoffs=3", "--model.head_bias=false", "--train.epochs=1", "--train.bptt=10"]
    run = tmp_path / "run"
    fit(load_config(None, settings), load_corpus(locate(corpus_dir)), run, progress=False)
    model = load(run).model
    x, y = torch.tensor([[1, 2, 3, 4]]).t(), torch.tensor([[2, 3, 4, 5]]).t()
    expected = model.log_prob(x, y)[0]
    saved = json.loads((run / "config.json").read_text())
    del saved["model"]["div_value"]
    saved["model"]["head_bias"] = True
    (run / "config.json").write_text(json.dumps(saved))
    old = load(run)
    assert old.config.model.head_bias is False and old.model.head.asm.head.bias is None
    torch.testing.assert_close(old.model.log_prob(x, y)[0], expected)


def test_validation_within_epochs_selects_the_best_of_all_checks(corpus_dir, tmp_path):
    """train.eval_every: the model kept as best is the one with the lowest validation loss
    among every check and epoch end, and evaluating it again gives that loss."""
    settings = ["--model.hidden_size=16", "--model.embed_size=16", "--model.dropout=0.2"]
    settings += ["--train.epochs=2", "--train.lr=3", "--train.bptt=10", "--train.batch_size=8"]
    config = load_config(None, [*settings, "--train.eval_every=7", "--train.log_every=1000"])
    run = tmp_path / "run"
    summary = fit(config, load_corpus(locate(corpus_dir)), run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    checks, ends = [r for r in rows if "check" in r], [r for r in rows if "epoch" in r]
    assert [r["step"] for r in checks] == list(range(7, ends[-1]["step"] + 1, 7))
    assert [r["check"] for r in checks] == [1 if r["step"] <= ends[0]["step"] else 2 for r in checks]
    figures = [r["valid_loss"] for r in checks + ends]
    assert math.isclose(summary["best_valid"]["loss"], min(figures), rel_tol=1e-9)
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    winner = min(checks + ends, key=lambda r: (r["valid_loss"], -r["step"]))  # ties: the later one
    assert best["step"] == winner["step"]


def test_nan_weights_stop_at_once_naming_them(corpus_dir):
    config = load_config(
        None,
        ["--model.hidden_size=8", "--model.embed_size=8", "--train.max_bad_steps=3", "--train.batch_size=4"],
    )
    corpus = load_corpus(locate(corpus_dir))
    task = LanguageModelling(config, corpus, torch.device("cpu"))
    model = task.model
    optimizer = make_optimizer(model, config)
    with torch.no_grad():
        model.embedding.weight[corpus.vocab.index("a")] = math.nan  # every window meets an 'a'
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RnnkitError, match=r"step 1: .*the weights embedding.weight are not finite"):
        train_epoch(
            task,
            optimizer,
            config,
            History(lr=1.0),
            Cursor(),
            lambda e: None,
            torch.Generator(),
            progress=False,
        )
    after = list(model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(after[1:], before[1:]))  # no step was taken


def test_cli_train_and_evaluate(corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(corpus_dir),
        "--out",
        str(run),
        "--no-progress",
        "--model.cell=gru",
        "--model.hidden_size=16",
        "--model.embed_size=16",
        "--train.epochs=1",
    ]
    assert main([*args, "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)  # stdout holds only the figures; the log is on stderr
    assert trained["unit"] == "word" and set(trained) == {"unit", "best_valid", "test", "run"}
    assert main(["evaluate", str(run), "--data", str(corpus_dir), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["split"] == "test" and math.isfinite(figures["ppl"]) and figures["unit"] == "word"
    summary = json.loads((run / "summary.json").read_text())
    assert figures["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)  # streamed = in memory
    assert main(["evaluate", str(run), "--split", "valid"]) == 0  # the corpus the run recorded
    assert capsys.readouterr().out.startswith("valid: ppl ")
    assert main(args) == 2  # the run directory exists: refused, nothing overwritten
    assert "not empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    words = ["a", "b", "c", "d", "e", "f"]
    g = torch.Generator().manual_seed(1)
    starts = torch.randint(6, (300,), generator=g).tolist()
    rows = [" ".join(words[(start + i) % 6] for i in range(6)) for start in starts]
    for split in ("train", "valid", "test"):
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    config = load_config(
        None,
        [
            "--model.hidden_size=32",
            "--model.embed_size=32",
            "--train.epochs=4",
            "--train.optimizer=adam",
            "--train.lr=0.01",
            "--train.bptt=10",
            "--train.batch_size=8",
        ],
    )
    fit(config, load_corpus(locate(root)), root / "run", progress=False)
    return root / "run"


def test_score_equals_the_product_of_next_token_probabilities(trained):
    model, vocab, _, codec = load(trained)
    result = score_line(model, vocab, codec, "c d e f")
    assert result["tokens"] == ["c", "d", "e", "f", "<eos>"]
    expected, prefix = 0.0, ""
    for token in result["tokens"]:
        probs = dict(next_distribution(model, vocab, codec, prefix, k=len(vocab)))
        expected += math.log(probs[token])
        prefix = f"{prefix} {token}".strip()
    assert result["logprob"] == pytest.approx(expected, rel=1e-5)
    assert sum(result["surprisal_bits"]) == pytest.approx(-expected / math.log(2), rel=1e-5)


def test_batched_scoring_equals_one_line_at_a_time(trained, tmp_path, capsys):
    """Lines of every length (empty, unknown words, longer than any in training) scored in
    padded batches give each line's own figures; the CLI's order and numbering hold for
    every batch size."""
    model, vocab, _, codec = load(trained)
    g = torch.Generator().manual_seed(1)
    words = ["a", "b", "c", "d", "e", "f", "zzz"]
    lines = ["", "a", "c d e f", " ".join(words[int(i)] for i in torch.randint(7, (90,), generator=g))]
    lines += [
        " ".join(words[int(i)] for i in torch.randint(7, (int(n),), generator=g)) for n in range(1, 30, 3)
    ]
    batched = score_lines(model, vocab, codec, lines)
    for line, got in zip(lines, batched):
        one = score_line(model, vocab, codec, line)
        assert got["tokens"] == one["tokens"]
        assert got["logprob"] == pytest.approx(one["logprob"], rel=1e-5, abs=1e-6)
        assert got["surprisal_bits"] == pytest.approx(one["surprisal_bits"], rel=1e-5, abs=1e-6)
    text = tmp_path / "lines.txt"
    text.write_text("".join(line + "\n" for line in lines))
    outputs = []
    for size in ("1", "3", "64"):
        assert main(["score", str(trained), str(text), "--json", "--batch-size", size]) == 0
        captured = capsys.readouterr()
        assert f"{len(lines)} lines" in captured.err and "tokens/s" in captured.err
        outputs.append([json.loads(row) for row in captured.out.splitlines()])
    assert [r["line"] for r in outputs[2]] == list(range(1, len(lines) + 1))
    for rows in outputs[:2]:
        for a, b in zip(rows, outputs[2]):
            assert a["tokens"] == b["tokens"] and a["logprob"] == pytest.approx(
                b["logprob"], rel=1e-5, abs=1e-6
            )
    assert main(["score", str(trained), str(text), "--batch-size", "0"]) == 2


PEAK_RSS = """
import re, sys
from rnnkit.cli.main import main
code = main(sys.argv[1:])
# VmHWM, not ru_maxrss: Linux keeps the parent's ru_maxrss across fork and exec
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print("PEAK", peak, file=sys.stderr)
raise SystemExit(code)
"""


def test_score_streams_in_constant_memory(trained, tmp_path):
    """Ten times the text, the same peak memory: a few MB here (bench/score_stream.py
    runs 100 MB). Holding the lines or their results would add tens of MiB."""
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    peaks = {}
    for megabytes in (0.25, 2.5):
        text = tmp_path / f"{megabytes}.txt"
        with text.open("w") as f:
            size = 0
            while size < megabytes * 1e6:
                line = " ".join(rng.choice("abcdef") for _ in range(rng.randint(3, 30))) + "\n"
                size += f.write(line)
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, "score", str(trained), str(text), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-1000:]
        peaks[megabytes] = int(proc.stderr.split("PEAK")[-1]) / 1024
        assert "lines/s" in proc.stderr
    assert peaks[2.5] - peaks[0.25] < 12, peaks


def test_top_k_one_is_greedy_and_seeds_repeat(trained):
    model, vocab, _, codec = load(trained)
    greedy = generate(model, vocab, codec, "a", max_tokens=5, top_k=1, stop_at_eos=False)
    prefix = "a"
    for token in greedy:
        assert token == next_distribution(model, vocab, codec, prefix, k=1)[0][0]
        prefix += " " + token
    tiny_p = generate(model, vocab, codec, "a", max_tokens=5, top_p=1e-6, stop_at_eos=False)
    assert tiny_p == greedy
    runs = [
        generate(model, vocab, codec, "b", 8, generator=torch.Generator().manual_seed(3)) for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_cli_generate_score_next(trained, tmp_path, capsys):
    assert main(["generate", str(trained), "--prompt", "a b", "--num", "2", "--json"]) == 0
    samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(samples) == 2 and all(s["prompt"] == "a b" for s in samples)
    text = tmp_path / "lines.txt"
    text.write_text("a b c d e f\nd e f a b c\n")
    assert main(["score", str(trained), str(text), "--json"]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["line"] for s in scored] == [1, 2] and all(s["ppl"] < 2 for s in scored)
    assert main(["next", str(trained), "a b c", "-k", "2", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert top[0]["token"] == "d" and top[0]["p"] > 0.5
    text.write_bytes(b"a b\nc \xfe d\n")
    assert main(["score", str(trained), str(text)]) == 2
    assert "line 2, byte offset 6: not UTF-8" in capsys.readouterr().err
    assert main(["generate", str(trained), "--temperature", "0"]) == 2


def test_learning_curve_png(trained):
    png = trained / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_an_unusable_device_is_one_line(trained, capsys):
    assert main(["next", str(trained), "a", "--device", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "device 'nonsense' is not usable" in err and err.count("\n") == 1


def test_bpe_run_trains_generates_and_scores_from_the_command_line(tmp_path, capsys):
    """Raw text, one file split 90/10, byte-level BPE learned on train: the whole CLI path."""
    lines = [
        f"the {a} {v} the {b}." for a in ("cat", "dog", "rat") for v in ("saw", "ate") for b in ("mat", "log")
    ]
    text = "\n".join(lines * 25) + "\n"
    (tmp_path / "raw.txt").write_text(text)
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "raw.txt"), "--out", str(run), "--no-progress"]
    args += ["--data.level=bpe", "--data.max_size=300", "--model.hidden_size=32", "--model.embed_size=32"]
    args += [
        "--train.optimizer=adam",
        "--train.lr=0.01",
        "--train.epochs=6",
        "--train.bptt=12",
        "--train.batch_size=4",
    ]
    assert main(args) == 0
    assert (run / "tokenizer.json").is_file()
    model, vocab, _, codec = load(run)
    ppl = json.loads((run / "summary.json").read_text())["best_valid"]["ppl"]
    assert ppl < len(vocab) / 4  # it learned something about the subwords
    greedy = generate(model, vocab, codec, "the cat", max_tokens=20, top_k=1)
    assert codec.join(greedy).endswith(".")  # a whole sentence, stopped at its newline
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "the dog", "--json", "--seed", "2"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert "\n" not in sample["text"]
    assert main(["score", str(run), str(tmp_path / "raw.txt"), "--json"]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(scored) == text.count("\n") and codec.join(scored[0]["tokens"]) == lines[0] + "\n"


def test_data_or_vocabulary_that_does_not_belong_to_the_run(trained, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for split in ("train", "valid", "test"):
        (other / f"{split}.txt").write_text("quite different words here\nnothing the run has seen\n")
    assert main(["evaluate", str(trained), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "does not match the vocabulary" in err and "test.txt" in err and len(err.splitlines()) == 1
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "vocab.json").write_text(json.dumps({"tokens": ["<unk>", "<eos>", "a", "b"], "unk": "<unk>"}))
    assert main(["generate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "has 4 tokens but the weights" in err and len(err.splitlines()) == 1
