"""int8 inference against float32 on the CPU: PyTorch, ONNX Runtime, and both in int8 (issue 19, item 3).

    python bench/int8.py --synthetic                       # 2x650 LSTM LM, 10k words, untrained: speed
    python bench/int8.py --lm runs/ptb-60min --tagger runs/ewt-upos   # trained runs: speed and quality

Side by side in this process, interleaved (``harness.py``), ``--threads`` (2) threads on every
side (``torch.set_num_threads``; ONNX Runtime's intra-op threads), the same ids fed to all:

- ``torch fp32``: rnnkit's model on its fast path (what ``rnnkit score``/``next``/``predict`` run);
- ``torch fp32 -oneDNN``: the same with oneDNN off, torch's plain LSTM kernel (the fast path's
  oneDNN LSTM costs more than the step itself at one token: see the printed figures);
- ``torch int8``: :func:`rnnkit.export.quantize_model` (torch's dynamic int8 LSTM/GRU and linear layers);
- ``ORT fp32`` / ``ORT int8``: the run exported by :func:`rnnkit.export.export_onnx`, without
  and with ``quantize="int8"``, run by :class:`rnnkit.export.OnnxModel`;
- ``ORT fp32 score-graph`` / ``ORT int8 score-graph`` (scoring rows only): the language model's
  scoring graph (``export_onnx(..., scoring=True)``), which computes the log-probabilities of
  the targets only, as torch's ``log_prob`` does, not the whole (L, N, V) distribution.

Cases: a language model scoring 35-token windows at batch 1 and 64 (log P of every next token,
a state carried in: tokens/s), the next-token latency at batch 1 (one token and a state in, the
whole next-token distribution and the state out), and a tagger tagging sentences in batches
of 32 sorted by length (the tags out, Viterbi or argmax included: sentences/s; ids built once,
outside the timing, the same for every side). With trained runs, also the quality int8 costs:
the language model's test perplexity and the tagger's test accuracy, each side on the whole
test split. Ratios are medians over repeats of per-repeat ratios [min, max], against torch fp32.
On a 2-core machine shared with other work, torch's two OpenMP threads lose far more to the
other process than ONNX Runtime's do (torch's next-token step measured 10-57 ms at loads
1-2): measure on a quiet machine, or compare with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import rnnkit
from rnnkit.cli import malloc
from rnnkit.config import load_config
from rnnkit.data.batching import batchify, bptt_windows
from rnnkit.data.corpora import locate
from rnnkit.export import OnnxModel, export_onnx, quantize_model, quantize_onnx, to_onnx
from rnnkit.models.config import build_model, build_tagger
from rnnkit.tasks import task_kind
from rnnkit.tasks.tagging import external_tags
from rnnkit.tasks.tagging_metrics import token_accuracy
from rnnkit.training.run import recorded_data

WINDOW = 35
TAG_BATCH = 32
TARGETS = {  # issue 19: int8 against fp32 PyTorch
    "next-token latency, batch 1": 2.5,
    "score, batch 64": 2.0,
}
VARIANTS = (
    "torch fp32",
    "torch fp32 -oneDNN",
    "torch int8",
    "ORT fp32",
    "ORT int8",
    "ORT fp32 score-graph",
    "ORT int8 score-graph",
)
SCORE_GRAPH = " score-graph"


def no_onednn(fn: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        with torch.backends.mkldnn.flags(enabled=False):
            fn()

    return call


def onnx_files(
    model: torch.nn.Module, trained: rnnkit.Trained | None, out: Path, scoring: bool
) -> dict[str, Path]:
    """The float32 and int8 ONNX files of ``model`` (of the run ``trained`` when there is one),
    and with ``scoring`` its scoring graphs in both too."""
    files = {}
    for graph in (False, True) if scoring else (False,):
        for quantize in (None, "int8"):
            name = f"ORT {quantize or 'fp32'}" + (SCORE_GRAPH if graph else "")
            path = out / f"{name.split(' ', 1)[1].replace(' ', '-')}.onnx"
            if trained is not None:
                export_onnx(trained, path, quantize=quantize, scoring=graph)
            else:
                proto = to_onnx(model, scoring=graph)
                path.write_bytes((quantize_onnx(proto) if quantize else proto).SerializeToString())
            files[name] = path
    return files


def lm_cases(model, sessions: dict[str, OnnxModel], args) -> list[dict]:
    """Scoring at batch 1 and 64, and the next-token latency, every variant side by side."""
    int8 = quantize_model(model)
    g = torch.Generator().manual_seed(0)
    cases = (
        ("score, batch 1", WINDOW, 1),
        ("score, batch 64", WINDOW, 64),
        ("next-token latency, batch 1", 1, 1),
    )
    return [lm_case(model, int8, sessions, case, L, N, g, args) for case, L, N in cases]


def lm_case(model, int8, sessions: dict[str, OnnxModel], case: str, L: int, N: int, g, args) -> dict:
    """One case: ``L`` tokens of ``N`` sequences in, a state carried in; scored (L > 1) or the
    whole next-token distribution (L = 1)."""
    vocab = model.embedding.num_embeddings
    ids = torch.randint(vocab, (L + 1, N), generator=g)
    with torch.no_grad():  # a state carried in, as from the text before
        _, state = model(torch.randint(vocab, (WINDOW, N), generator=g))
    x, y = ids[:-1], ids[1:]
    xn, yn = x.numpy(), y.numpy()
    onnx_state = tuple(s.numpy() for s in (state if isinstance(state, tuple) else (state,)))

    def torch_side(m):
        return (lambda: torch_score(m, x, y, state)) if L > 1 else (lambda: torch_next(m, x, state))

    def onnx_side(s):
        return (lambda: s.score(xn, yn, onnx_state)) if L > 1 else (lambda: s.log_probs(xn, onnx_state))

    variants = {
        "torch fp32": torch_side(model),
        "torch fp32 -oneDNN": no_onednn(torch_side(model)),
        "torch int8": torch_side(int8),
        # the scoring graphs score; the next token needs the whole distribution
        **{name: onnx_side(s) for name, s in sessions.items() if L > 1 or not s.scoring},
    }
    times = harness.interleaved(variants, harness.usable("cpu"), args.repeats, args.seconds)
    if L == 1:
        return row(case, "ms", {k: 1e3 * statistics.median(v) for k, v in times.items()}, times)
    return row(case, "tokens/s", {k: L * N / statistics.median(v) for k, v in times.items()}, times)


@torch.no_grad()
def torch_score(model, x, y, state) -> None:
    model.log_prob(x, y, state)


@torch.no_grad()
def torch_next(model, x, state) -> None:
    h, _ = model(x, state)
    model.head.log_probs(h[-1])


def row(case: str, unit: str, figures: dict[str, float], times: dict[str, list[float]]) -> dict:
    ratios = {k: harness.ratio(times, k, "torch fp32") for k in times if k != "torch fp32"}
    ratios["ORT int8 / ORT fp32"] = harness.ratio(times, "ORT int8", "ORT fp32")
    ratios["ORT int8 / torch fp32 -oneDNN"] = harness.ratio(times, "ORT int8", "torch fp32 -oneDNN")
    ratios["torch int8 / torch fp32 -oneDNN"] = harness.ratio(times, "torch int8", "torch fp32 -oneDNN")
    graph = "ORT int8" + SCORE_GRAPH
    if graph in times:
        ratios[f"{graph} / ORT int8"] = harness.ratio(times, graph, "ORT int8")
        ratios[f"{graph} / ORT fp32{SCORE_GRAPH}"] = harness.ratio(times, graph, "ORT fp32" + SCORE_GRAPH)
    best_name = graph if graph in times else "ORT int8"  # the fastest int8 ONNX file for the case
    out = {"case": case, "unit": unit, "figures": figures, "speedup": ratios}
    if case in TARGETS:
        out["target"] = {f"{best_name} / torch fp32": TARGETS[case]}
    line = "\n  ".join([f"{case}:", *(f"{k:22} {v:10.1f} {unit}" for k, v in figures.items())])
    if graph in times:
        g = ratios[graph]
        line += f"\n  {graph} vs torch fp32 {g['median']:.2f}x [{g['min']:.2f}, {g['max']:.2f}]"
        line += f", vs ORT int8 {ratios[f'{graph} / ORT int8']['median']:.2f}x"
        line += f", vs ORT fp32 score-graph {ratios[f'{graph} / ORT fp32{SCORE_GRAPH}']['median']:.2f}x"
    best = ratios["ORT int8"]
    line += f"\n  ORT int8 vs torch fp32 {best['median']:.2f}x [{best['min']:.2f}, {best['max']:.2f}]"
    line += f", vs torch fp32 -oneDNN {ratios['ORT int8 / torch fp32 -oneDNN']['median']:.2f}x"
    line += f", vs ORT fp32 {ratios['ORT int8 / ORT fp32']['median']:.2f}x"
    line += f"; torch int8 vs torch fp32 {ratios['torch int8']['median']:.2f}x"
    line += f" (vs -oneDNN {ratios['torch int8 / torch fp32 -oneDNN']['median']:.2f}x)"
    if case in TARGETS:
        met = ratios[best_name]["median"] >= TARGETS[case]
        line += f"\n  target {best_name} >= {TARGETS[case]}x torch fp32: {'met' if met else 'NOT met'}"
    print(line, flush=True)
    return out


def tag_case(model, sessions: dict[str, OnnxModel], batches: list[tuple], args) -> dict:
    """Sentences/s tagging ``batches`` (words, lengths, chars) with every variant."""
    int8 = quantize_model(model)
    onnx_batches = [
        (w.numpy(), n.numpy(), None if c is None else tuple(t.numpy() for t in c)) for w, n, c in batches
    ]

    def torch_side(m):
        @torch.no_grad()
        def run() -> None:
            for words, lengths, chars in batches:
                m.decode(m(words, lengths, chars), lengths)

        return run

    def onnx_side(s):
        return lambda: [s.tag(*b) for b in onnx_batches]

    variants = {
        "torch fp32": torch_side(model),
        "torch fp32 -oneDNN": no_onednn(torch_side(model)),
        "torch int8": torch_side(int8),
        **{name: onnx_side(s) for name, s in sessions.items()},
    }
    times = harness.interleaved(variants, harness.usable("cpu"), args.repeats, args.seconds)
    sentences = sum(len(b[1]) for b in batches)
    figures = {k: sentences / statistics.median(v) for k, v in times.items()}
    return row("tag, batches of 32", "sentences/s", figures, times)


# -- quality of trained runs -----------------------------------------------------------------------


def lm_quality(trained, sessions: dict[str, OnnxModel]) -> dict:
    """Test perplexity of each side over the run's test split (state carried, as ``rnnkit evaluate``)."""
    files = locate(**{k: v for k, v in recorded_data(trained.run_dir).items()}, valid_fraction=0.1)
    t = trained.config.train
    text = Path(files.test).read_text(encoding="utf-8")
    stream = trained.vocab.encode(trained.codec.corpus_tokens(text))
    columns = batchify(stream, t.eval_batch_size)
    windows = [(x, y) for _, x, y in bptt_windows(columns, t.bptt)]
    ppl = {}
    start = time.perf_counter()
    for name, model in (("torch fp32", trained.model), ("torch int8", quantize_model(trained.model))):
        state, nll, count = None, 0.0, 0
        with torch.no_grad():
            for x, y in windows:
                logp, state = model.log_prob(x, y, state)
                nll -= logp.sum().item()
                count += y.numel()
        ppl[name] = math.exp(nll / count)
    for name, session in sessions.items():
        state, nll, count = None, 0.0, 0
        for x, y in windows:
            logp, state = session.score(x.numpy(), y.numpy(), state)
            nll -= float(logp.astype(np.float64).sum())
            count += y.numel()
        ppl[name] = math.exp(nll / count)
    pairs = [("ORT int8", "ORT fp32"), ("torch int8", "torch fp32")]
    pairs += [("ORT int8" + SCORE_GRAPH, "torch fp32")] if "ORT int8" + SCORE_GRAPH in ppl else []
    change = {k: ppl[k] / ppl[base] - 1 for k, base in pairs}
    print(
        "test perplexity: "
        + "  ".join(f"{k} {v:.3f}" for k, v in ppl.items())
        + f"; int8 vs fp32: ORT {100 * change['ORT int8']:+.3f}%, torch {100 * change['torch int8']:+.3f}%"
        + f" (target <= 1%; {count} tokens, {time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return {"test_ppl": ppl, "relative_change": change, "tokens": count}


def tag_quality(task, sessions: dict[str, OnnxModel], batches, order, sentences) -> dict:
    """Test accuracy of each side (points), over the whole test split."""
    gold = [s.tags for s in sentences]
    accuracy = {}
    for name, model in (("torch fp32", task.model), ("torch int8", quantize_model(task.model))):
        paths = []
        with torch.no_grad():
            for words, lengths, chars in batches:
                paths += model.decode(model(words, lengths, chars), lengths)
        accuracy[name] = 100 * token_accuracy(gold, predictions(task, paths, order))
    for name, session in sessions.items():
        paths = []
        for words, lengths, chars in batches:
            tags = session.tag(
                words.numpy(), lengths.numpy(), None if chars is None else tuple(t.numpy() for t in chars)
            )
            paths += [tags[: int(n), i].tolist() for i, n in enumerate(lengths)]
        accuracy[name] = 100 * token_accuracy(gold, predictions(task, paths, order))
    change = {
        k: accuracy[k] - accuracy[b] for k, b in (("ORT int8", "ORT fp32"), ("torch int8", "torch fp32"))
    }
    print(
        "test accuracy: "
        + "  ".join(f"{k} {v:.2f}%" for k, v in accuracy.items())
        + f"; int8 vs fp32: ORT {change['ORT int8']:+.2f}, torch {change['torch int8']:+.2f} points"
        + " (target >= -0.2)",
        flush=True,
    )
    return {"test_accuracy": accuracy, "change_points": change, "sentences": len(sentences)}


def predictions(task, paths: list[list[int]], order: list[int]) -> list[list[str]]:
    """Tag strings of each sentence in the split's order, from paths in batch order."""
    out: list[list[str]] = [[] for _ in order]
    for i, path in zip(order, paths):
        out[i] = external_tags(task.corpus.tags.decode(path), task.corpus.spans)
    return out


def tag_batches(task, sentences) -> tuple[list[tuple], list[int]]:
    """The split in batches of 32 sorted by length (as ``Tagging.predict``), as tensors."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].words))
    batches = []
    for b in range(0, len(order), TAG_BATCH):
        words, lengths, chars, _ = task.tensors([sentences[i] for i in order[b : b + TAG_BATCH]], False)
        batches.append((words, lengths, chars))
    return batches, order


def synthetic_tag_batches(model, count: int, g: torch.Generator) -> list[tuple]:
    """Random sentences of 3-40 words (EWT's are 17 on average) of random words of 1-12
    characters, in batches of 32 sorted by length."""
    lengths = sorted(torch.randint(3, 41, (count,), generator=g).tolist())
    words, chars = model.embedding.num_embeddings, model.chars.embedding.num_embeddings
    batches = []
    for b in range(0, count, TAG_BATCH):
        n = torch.tensor(lengths[b : b + TAG_BATCH])
        L, N = int(n.max()), len(n)
        ids = torch.randint(1, words, (L, N), generator=g) * (torch.arange(L)[:, None] < n[None, :])
        distinct = torch.unique(ids[ids > 0])
        where = torch.searchsorted(distinct, ids).clamp(max=len(distinct) - 1)
        spelled_lengths = torch.randint(1, 13, (len(distinct),), generator=g)
        spelled = torch.randint(1, chars, (12, len(distinct)), generator=g)
        spelled[torch.arange(12)[:, None] >= spelled_lengths[None, :]] = 0
        batches.append((ids, n, (spelled[: int(spelled_lengths.max())], spelled_lengths, where)))
    return batches


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lm", help="a trained language model run (e.g. of the ptb-60min preset)")
    p.add_argument("--tagger", help="a trained tagger run (e.g. of the ewt-upos preset)")
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="untrained models of the ptb-60min preset (2x650 LSTM, adaptive softmax, 10k words) and of "
        "the ewt-upos preset (10k words): speed only",
    )
    p.add_argument(
        "--head", choices=["adaptive", "full"], default="adaptive", help="--synthetic LM's softmax"
    )
    p.add_argument(
        "--only", choices=["lm", "tagger"], help="--synthetic: time the language model or the tagger alone"
    )
    p.add_argument("--tag-sentences", type=int, default=256, help="sentences tagged per timed call")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--no-quality", action="store_true", help="trained runs: speed only")
    p.add_argument("--no-speed", action="store_true", help="trained runs: quality only")
    p.add_argument("--json", default="bench/out/int8.json")
    args = p.parse_args()
    if not (args.synthetic or args.lm or args.tagger):
        p.error("give --synthetic, or --lm RUN and/or --tagger RUN")
    malloc.tune()
    torch.set_num_threads(args.threads)
    # torch says, each time oneDNN is switched off and on, that TF32 needs an Intel GPU
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    g = torch.Generator().manual_seed(0)
    result: dict = {"machine": harness.machine(torch.device("cpu")), "command": " ".join(sys.argv)}
    out = Path(tempfile.mkdtemp(prefix="rnnkit-int8-bench-"))

    def sessions_of(model, trained, scoring: bool = False) -> dict[str, OnnxModel]:
        files = onnx_files(model, trained, Path(tempfile.mkdtemp(dir=out)), scoring)  # one folder per model
        sizes = {k: f.stat().st_size for k, f in files.items()}
        print("ONNX files: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()), flush=True)
        return {k: OnnxModel(f, threads=args.threads) for k, f in files.items()}, sizes

    if (args.synthetic and args.only != "tagger") or args.lm:
        if args.lm:
            trained = rnnkit.load(args.lm)
            model, what = trained.model, f"the run {args.lm}"
        else:
            trained, config = None, load_config("ptb-60min", [f"--model.head={args.head}"])
            torch.manual_seed(0)
            model, what = (
                build_model(config.model, 10_000).eval(),
                f"untrained ptb-60min model, {args.head} softmax",
            )
        print(f"language model: {what}", flush=True)
        sessions, sizes = sessions_of(model, trained, scoring=True)
        rows = [] if args.no_speed else lm_cases(model, sessions, args)
        result["lm"] = {"model": what, "file_bytes": sizes, "rows": rows}
        if trained is not None and not args.no_quality:
            result["lm"]["quality"] = lm_quality(trained, sessions)
    if (args.synthetic and args.only != "lm") or args.tagger:
        if args.tagger:
            trained = rnnkit.load(args.tagger)
            data = recorded_data(Path(args.tagger))["data"]
            task = task_kind("tag").from_run(
                Path(args.tagger), trained.config, torch.device("cpu"), data, "best"
            )
            sentences = task.corpus.test
            batches, order = tag_batches(task, sentences)
            model, what = task.model, f"the run {args.tagger}"
            timed = batches[:: max(1, len(batches) // max(1, args.tag_sentences // TAG_BATCH))]
        else:
            trained, config = None, load_config("ewt-upos", [])
            torch.manual_seed(0)
            model = build_tagger(config.model, 10_000, 100, 18).eval()
            what = "untrained ewt-upos model (10k words, 100 characters, 18 tags)"
            timed = synthetic_tag_batches(model, args.tag_sentences, g)
        print(f"tagger: {what}", flush=True)
        sessions, sizes = sessions_of(model, trained)
        rows = [] if args.no_speed else [tag_case(model, sessions, timed, args)]
        result["tagger"] = {"model": what, "file_bytes": sizes, "rows": rows}
        if trained is not None and not args.no_quality:
            result["tagger"]["quality"] = tag_quality(task, sessions, batches, order, sentences)
    harness.write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
