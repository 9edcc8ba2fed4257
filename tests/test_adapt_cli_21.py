"""``evaluate --adapt``, ``score --adapt`` and ``tune-adapt`` through the real console script
(issue 21, items 1-3): the checkpoint never changes, the search reads the validation split
only and its settings are then used, Ctrl-C leaves no half-written adapt.json, and every bad
value is one line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import CLI_ENV, assert_one_line_error, run_rnnkit, write_toy_lm_corpus, write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.fileio import sha256

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny language model trained on train/valid/test files, and a tiny tagger."""
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("adapt-cli"))
    shutil.copy(root / "valid.txt", root / "test.txt")
    lm = root / "run"
    files = [f"--{s}={root / f'{s}.txt'}" for s in ("train", "valid", "test")]
    assert main(["train", *files, "--out", str(lm), *TINY, "--train.bptt=8"]) == 0
    treebank = write_toy_treebank(root / "treebank")
    tagger = root / "tag-run"
    assert main(["train", "--data", str(treebank), "--out", str(tagger), "--task=tag", *TINY]) == 0
    return {"lm": lm, "tag": tagger, "corpus": root}


def checkpoints(run) -> dict[str, str]:
    return {str(p): sha256(p) for p in sorted(run.rglob("*.safetensors"))}


def copied_run(runs, tmp_path, valid_lines: int | None = None):
    """The language model run and its corpus copied to ``tmp_path``, with no test file, and a
    validation file of ``valid_lines`` lines if given."""
    corpus = tmp_path / "corpus"
    shutil.copytree(
        runs["corpus"], corpus, ignore=shutil.ignore_patterns("run", "tag-run", "treebank", "test.txt")
    )
    if valid_lines:
        line = (corpus / "valid.txt").read_text().splitlines()[0]
        (corpus / "valid.txt").write_text((line + "\n") * valid_lines)
    run = tmp_path / "run"
    shutil.copytree(runs["lm"], run)
    record = {"data": None, "train": str(corpus / "train.txt"), "valid": str(corpus / "valid.txt")}
    (run / "data.json").write_text(json.dumps(record | {"test": str(corpus / "test.txt")}))
    return run


def test_evaluate_adapt_gives_adapted_figures_and_leaves_the_checkpoint(runs):
    before = checkpoints(runs["lm"])
    proc = run_rnnkit("evaluate", str(runs["lm"]), "--adapt", "dynamic,cache", "--segment", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["split"] == "test" and figures["unit"] == "word"
    assert (
        figures["adapt"]["methods"] == "dynamic,cache"
        and figures["adapt"]["source"] == "defaults and options"
    )
    assert figures["adapt"]["dynamic"]["segment"] == 4 and figures["adapt"]["tokens_per_s"] > 0
    assert figures["ppl"] > 1 and figures["model_ppl"] > 1 and figures["oov"] == 0
    text = run_rnnkit("evaluate", str(runs["lm"]), "--adapt", "cache", "--split", "valid")
    assert text.returncode == 0, text.stderr
    first, second = text.stdout.splitlines()
    assert first.startswith("valid: ppl ") and "the model alone on the same stream: ppl" in second
    assert checkpoints(runs["lm"]) == before


def test_score_adapt_reads_the_lines_as_one_stream(runs, tmp_path):
    line = (runs["corpus"] / "valid.txt").read_text().splitlines()[0]
    text = tmp_path / "repeat.txt"
    text.write_text((line + "\n") * 5)
    plain = run_rnnkit("score", str(runs["lm"]), str(text), "--json")
    adapted = run_rnnkit(
        "score", str(runs["lm"]), str(text), "--json", "--adapt", "cache", "--cache-lambda", "0.3"
    )
    assert plain.returncode == adapted.returncode == 0, plain.stderr + adapted.stderr
    plain_lines = [json.loads(row) for row in plain.stdout.splitlines()]
    adapted_lines = [json.loads(row) for row in adapted.stdout.splitlines()]
    assert [r["token_count"] for r in adapted_lines] == [r["token_count"] for r in plain_lines]
    assert [r["tokens"] for r in adapted_lines] == [r["tokens"] for r in plain_lines]
    assert len({r["logprob"] for r in plain_lines}) == 1  # each line alone: the same figures
    assert adapted_lines[-1]["logprob"] > plain_lines[-1]["logprob"]  # the cache saw it 4 times


def test_tune_adapt_reads_no_test_split_and_evaluate_uses_its_choice(runs, tmp_path):
    run = copied_run(runs, tmp_path)
    before = checkpoints(run)
    proc = run_rnnkit("tune-adapt", str(run), "--budget-tokens", "100", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((run / "adapt.json").read_text())
    assert json.loads(proc.stdout) == stored
    search = stored["search"]
    assert search["split"] == "valid" and search["trials"] >= 2 and search["seconds"] > 0
    # the model reads the text once for the baseline and the cache's replayed trials, once per other trial
    assert 0 < search["replayed_trials"] < search["trials"] and search["stats_tokens"] > 0
    assert search["tokens"] == (search["trials"] - search["replayed_trials"] + 1) * search["tokens_per_trial"]
    assert {"lr", "decay", "segment"} <= set(stored["dynamic"]) and {"window", "theta", "lam"} <= set(
        stored["cache"]
    )
    proc = run_rnnkit("evaluate", str(run), "--split", "valid", "--adapt", "dynamic,cache", "--json")
    assert proc.returncode == 0, proc.stderr
    used = json.loads(proc.stdout)["adapt"]
    assert used["source"] == "adapt.json"
    assert used["dynamic"] == stored["dynamic"] and used["cache"] == stored["cache"]
    assert_one_line_error(run_rnnkit("evaluate", str(run), "--adapt", "cache"), "test.txt")  # it is gone
    # searching the cache alone keeps the stored choice for dynamic evaluation
    assert main(["tune-adapt", str(run), "--adapt", "cache", "--budget-tokens", "100", "--no-progress"]) == 0
    again = json.loads((run / "adapt.json").read_text())
    assert again["dynamic"] == stored["dynamic"] and again["search"]["history"][0]["methods"] == "cache"
    # ... and the record of the search that chose it: both searches, the newest last
    assert [x["methods"] for x in again["searches"]] == [["cache", "dynamic"], ["cache"]]
    assert (
        again["searches"][0]["history"] == stored["search"]["history"]
        and again["searches"][1] == again["search"]
    )
    assert main(["tune-adapt", str(run), "--budget-tokens", "100", "--no-progress"]) == 0  # both again
    assert [x["methods"] for x in json.loads((run / "adapt.json").read_text())["searches"]] == [
        ["cache", "dynamic"]
    ]
    assert checkpoints(run) == before


def test_tune_adapt_keeps_the_given_segment_through_every_dynamic_trial(runs, tmp_path):
    run = copied_run(runs, tmp_path)
    args = ["tune-adapt", str(run), "--adapt", "dynamic", "--segment", "7", "--stats-tokens", "300"]
    assert main([*args, "--budget-tokens", "100", "--no-progress"]) == 0
    stored = json.loads((run / "adapt.json").read_text())
    assert stored["dynamic"]["segment"] == 7 and stored["dynamic"]["stats_tokens"] == 300
    trials = stored["search"]["history"]
    assert len(trials) >= 2 and all(t["dynamic"]["segment"] == 7 for t in trials)
    assert {t["dynamic"]["lr"] for t in trials} > {5e-5}  # η was searched from the paper's
    assert stored["search"]["stats_tokens"] <= 300
    proc = run_rnnkit("evaluate", str(run), "--split", "valid", "--adapt", "dynamic", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["adapt"]["dynamic"]["segment"] == 7  # evaluate reads it back


def test_ctrl_c_during_tune_adapt_leaves_no_adapt_json(runs, tmp_path):
    run = copied_run(runs, tmp_path, valid_lines=3000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "tune-adapt", str(run), "--no-progress"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=CLI_ENV,
        # a suite started in the background hands its children SIGINT ignored: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "no adaptation" in proc.stderr.readline()  # the search has begun
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not (run / "adapt.json").exists()
    assert [p.name for p in run.iterdir() if "adapt" in p.name] == []  # no temporary file either


@pytest.mark.parametrize(
    "args,words",
    [
        (["evaluate", "{lm}", "--adapt", "dynamic", "--adapt-lr", "nan"], ["--adapt-lr"]),
        (["score", "{lm}", "-", "--adapt-lr", "0.1"], ["--adapt-lr", "--adapt dynamic"]),
        (["evaluate", "{tag}", "--adapt", "cache"], ["language model"]),
    ],
)
def test_bad_values_are_one_line_errors(runs, args, words):
    args = [a.format(lm=runs["lm"], tag=runs["tag"]) for a in args]
    assert_one_line_error(run_rnnkit(*args), *words)


@pytest.mark.parametrize(
    "args,words",
    [
        (["evaluate", "{lm}", "--adapt", "cache", "--cache-lambda", "1"], ["--cache-lambda", "[0, 1)"]),
        (["evaluate", "{lm}", "--adapt", "dynamic", "--segment", "0"], ["--segment"]),
        (
            ["evaluate", "{lm}", "--adapt", "dynamic", "--cache-window", "5"],
            ["--cache-window", "--adapt cache"],
        ),
        (["evaluate", "{lm}", "--adapt", "both"], ["--adapt"]),
        (["evaluate", "{lm}", "--adapt", "cache", "--cache-theta", "inf"], ["--cache-theta"]),
        (["score", "{lm}", "-", "--adapt", "cache", "--cache-window", "1000000"], ["--cache-window"]),
        (["score", "{lm}", "-", "--adapt", "dynamic", "--stats-tokens", "1"], ["--stats-tokens"]),
        (["tune-adapt", "{lm}", "--budget-tokens", "5"], ["--budget-tokens"]),
        (["tune-adapt", "{lm}", "--budget-minutes", "nan"], ["--budget-minutes"]),
        (["tune-adapt", "{tag}"], ["language model"]),
        (["tune-adapt", "{lm}", "--segment", "0"], ["--segment"]),
        (["tune-adapt", "{lm}", "--stats-tokens", "-3"], ["--stats-tokens"]),
        (["tune-adapt", "{lm}", "--segment", "x"], ["--segment"]),
        (["tune-adapt", "{lm}", "--adapt", "cache", "--segment", "20"], ["--segment", "--adapt dynamic"]),
    ],
)
def test_more_bad_values_are_one_line_errors_in_process(runs, args, words, capsys):
    """The same checks as above, through ``main`` in this process (a process each costs seconds)."""
    try:
        status = main([a.format(lm=runs["lm"], tag=runs["tag"]) for a in args])
    except SystemExit as stop:  # a usage error, from argparse
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err


def test_a_corrupt_adapt_json_is_one_line(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["lm"], run)
    (run / "adapt.json").write_text("{")
    assert_one_line_error(
        run_rnnkit("evaluate", str(run), "--adapt", "cache", "--split", "valid"), "adapt.json"
    )
    for content in (
        '{"dynamic": {"lr": "fast"}}',
        "[1, 2]",
        '{"cache": {"window": -3}}',
        '{"cache": {"size": 3}}',
    ):
        (run / "adapt.json").write_text(content)
        assert main(["evaluate", str(run), "--adapt", "cache", "--split", "valid"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "adapt.json" in err, err


def test_a_choice_kept_keeps_the_record_of_its_search_from_older_files_too():
    from rnnkit.adapt.run import _still_standing

    old = {"search": {"trials": 3, "history": [{"methods": "dynamic"}, {"methods": "cache"}]}}  # no "methods"
    assert _still_standing(old, {"cache"}) == [{**old["search"], "methods": ["cache", "dynamic"]}]
    assert _still_standing(old, {"cache", "dynamic"}) == []  # every choice it made is made again
    newer = {"searches": [{"methods": ["dynamic"], "trials": 2}, {"methods": ["cache"], "trials": 5}]}
    assert _still_standing(newer, {"cache"}) == [{"methods": ["dynamic"], "trials": 2}]
    assert _still_standing(None, {"cache"}) == _still_standing({"searches": "junk"}, {"cache"}) == []


def test_finer_values_lie_halfway_to_the_grid_neighbours_and_beyond_an_edge():
    from rnnkit.adapt.run import GRID_CACHE_LAMBDA, GRID_DECAY, GRID_THETA, GRID_WINDOW, finer
    from rnnkit.adapt.settings import CacheSettings, DynamicSettings

    axes = (("theta", GRID_THETA), ("lam", GRID_CACHE_LAMBDA), ("window", GRID_WINDOW))
    # θ 1.0 is the grid's top (0.6 below it): √0.6 and one step of 1/0.6 beyond; λ 0.1
    # between 0.05 and 0.2; the window, whole, between 100 and 2000
    assert finer(CacheSettings(theta=1.0, lam=0.1, window=500), axes) == (
        ("theta", (0.77, 1.7)),
        ("lam", (0.071, 0.14)),
        ("window", (224, 1000)),
    )
    # next to a 0 the midpoint is arithmetic; a value off the grid gets no finer values
    assert finer(DynamicSettings(lr=3e-5, decay=0.001), (("lr", (1e-5, 1e-4)), ("decay", GRID_DECAY))) == (
        ("decay", (0.0005, 0.0014)),
    )


def test_the_search_finds_an_optimum_between_grid_points():
    """A loss whose minimum lies between two grid values of λ (and θ): the coarse pass stops
    on the grid, the finer pass moves to the value between."""
    from rnnkit.adapt.run import GRID_CACHE_LAMBDA, GRID_THETA, GRID_WINDOW, _coarse_to_fine
    from rnnkit.adapt.settings import AdaptSettings, CacheSettings

    seen = []

    def loss(settings):
        seen.append(settings)
        c = settings.cache
        return (c.lam - 0.14) ** 2 + (c.theta - 0.8) ** 2 + (c.window - 500) ** 2 * 1e-9

    best = _coarse_to_fine(
        loss,
        lambda: False,
        lambda c: AdaptSettings(("cache",), cache=c),
        CacheSettings(),
        (("theta", GRID_THETA), ("lam", GRID_CACHE_LAMBDA), ("window", GRID_WINDOW)),
    )
    assert (best.theta, best.lam, best.window) == (0.77, 0.14, 500)
    assert len(seen) == len(set(seen))  # no setting tried twice
