"""Adaptation on a trained run: its texts as ids, evaluation, line scoring and the search on validation."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnkit.adapt.methods import AdaptiveStream, DynamicEval, NeuralCache, gradient_statistics
from rnnkit.adapt.settings import (
    ADAPT_FILE,
    AdaptSettings,
    CacheSettings,
    DynamicSettings,
    _int_range,
    load_settings,
    parse_methods,
)
from rnnkit.data.corpora import check_known, locate
from rnnkit.data.lines import read_pieces
from rnnkit.data.text import Codec, split_lines
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import open_binary, read_text, write_text_atomic
from rnnkit.tasks.lm import lm_figures, text_figures
from rnnkit.training.run import recorded_data

if TYPE_CHECKING:
    from rnnkit.inference import LanguageModelRun

# -- a run's text as ids ------------------------------------------------------------------------------


class _Text:
    """A held-out text of a run's corpus, as ids read in pieces (a file streamed, or the
    tokens of a single file's held-out part), with what :func:`text_figures` needs."""

    def __init__(
        self, codec: Codec, vocab: Vocab, path: Path, tokens: list[str] | None = None, count: bool = True
    ) -> None:
        self.codec, self.vocab, self.path, self.tokens = codec, vocab, path, tokens
        self.total = self.unknown = self.words = self.nbytes = 0
        if not count:  # the training split, read for MS only
            return
        for part in self._token_parts():  # a first pass counts, as evaluate_file does
            self.total += len(part)
            self.unknown += sum(t not in vocab for t in part)
        if self.total < 2:
            raise RnnkitError(f"{path}: fewer than 2 tokens to evaluate")
        check_known(vocab, self.unknown, self.total, str(path))

    def _token_parts(self) -> Iterator[list[str]]:
        if self.tokens is not None:
            for i in range(0, len(self.tokens), 4096):
                yield self.tokens[i : i + 4096]
            return
        with open_binary(self.path, "corpus file") as handle:
            for piece in read_pieces(handle, str(self.path), 1 << 16):
                self.words += len(piece.text.split()) + (1 if piece.last else 0)
                self.nbytes += piece.size + len(piece.end or "")
                yield self.codec.piece_tokens(piece.text, piece.end)

    def ids(self, limit: int | None = None) -> Iterator[list[int]]:
        """The ids in parts, the first ``limit`` tokens only if given."""
        self.words = self.nbytes = 0
        left = math.inf if limit is None else limit
        for part in self._token_parts():
            part = part[: int(min(left, len(part)))]
            left -= len(part)
            yield [self.vocab.index(t) for t in part]
            if left <= 0:
                return

    def figures(self, nll: float, predicted: int, read: int) -> dict[str, float]:
        figures = lm_figures(nll, predicted)
        if self.tokens is not None and self.codec.level in ("char", "bpe"):  # as evaluate_tokens counts
            lines = split_lines(self.codec.join(self.tokens))
            self.words = sum(len(line.split()) + 1 for line in lines)
            self.nbytes = sum(len(line.encode("utf-8")) for line in lines)
        whole = read == self.total
        oov = None if self.vocab.unk is None or not whole else self.unknown
        if not whole:  # a part of the text (a search's budget): no per-word or per-byte figures
            return figures
        return text_figures(figures, self.codec.level, self.total, oov, self.words, self.nbytes)


def split_text(run: LanguageModelRun, split: str, data: str | Path | None = None) -> _Text:
    """The ``split`` (``valid`` or ``test``) of the run's corpus (or ``data``), never reading
    any other split's file."""
    files, _ = _files(run, data, with_test=split == "test")
    if files.valid_fraction is None:
        path = getattr(files, split)
        if path is None:
            raise RnnkitError(f"{files.train}: the corpus has no {split} split")
        return _Text(run.codec, run.vocab, path)
    if split == "test":
        raise RnnkitError(
            f"{files.train}: a single file is split into train and valid only, so it has no test split; "
            "try --split valid"
        )
    from rnnkit.tasks.lm import heldout_tokens

    return _Text(
        run.codec, run.vocab, files.train, heldout_tokens(files.train, files.valid_fraction, run.codec)
    )


def _files(run: LanguageModelRun, data: str | Path | None, with_test: bool) -> tuple[Any, dict[str, Any]]:
    recorded: dict[str, Any] = (
        recorded_data(run.run_dir)
        if data is None
        else {"data": str(data), "train": None, "valid": None, "test": None}
    )
    test = recorded["test"] if with_test else None  # a search must not even look for test
    files = locate(
        recorded["data"], recorded["train"], recorded["valid"], test, run.config.data.valid_fraction
    )
    return files, recorded


def training_ids(run: LanguageModelRun, limit: int, data: str | Path | None = None) -> Tensor:
    """The first ``limit`` tokens of the run's training split, as ids (for MS)."""
    files, _ = _files(run, data, with_test=False)
    if files.valid_fraction is not None:
        text = read_text(files.train, "corpus file")
        if run.codec.level == "bpe":
            tokens = run.codec.corpus_tokens(text[: int(len(text) * (1 - files.valid_fraction))])
        else:
            tokens = run.codec.corpus_tokens(text)
            tokens = tokens[: int(len(tokens) * (1 - files.valid_fraction))]
        return torch.tensor([run.vocab.index(t) for t in tokens[:limit]], dtype=torch.long)
    ids: list[int] = []
    for part in _Text(run.codec, run.vocab, files.train, count=False).ids(limit):
        ids += part
    return torch.tensor(ids, dtype=torch.long)


# -- evaluation and search -----------------------------------------------------------------------------


class Adapter:
    """A run's model with what adaptation needs prepared once (MS on the training data):
    :meth:`evaluate` reads a text with given settings, each time from the trained weights."""

    def __init__(self, run: LanguageModelRun, data: str | Path | None = None) -> None:
        self.run, self.data = run, data
        self._ms: dict[tuple[int, int, int], tuple[list[Tensor], int, float]] = {}

    def mean_square(self, s: DynamicSettings) -> tuple[list[Tensor], int, float]:
        """MS for ``s`` (cached by its segment, tokens and batch): (MS, tokens read, seconds)."""
        key = (s.segment, s.stats_tokens, s.stats_batch)
        if key not in self._ms:
            start = time.perf_counter()
            ids = training_ids(self.run, s.stats_tokens, self.data)
            model = copy.deepcopy(self.run.model)
            ms, read = gradient_statistics(model, ids, s.segment, s.stats_batch)
            self._ms[key] = (ms, read, time.perf_counter() - start)
        return self._ms[key]

    def evaluate(
        self,
        text: _Text,
        settings: AdaptSettings,
        limit: int | None = None,
        progress: bool = False,
        start: int | None = None,
    ) -> dict[str, Any]:
        """Figures of ``text`` (its first ``limit`` tokens) read with ``settings``."""
        stream, info = self.stream(settings, start)
        began = time.perf_counter()
        nll = 0.0
        read = 0
        bar = _bar(progress, min(text.total, limit or text.total))
        for ids in text.ids(limit):
            read += len(ids)
            nll -= float(stream.feed(ids).sum())
            bar.update(len(ids))
        nll -= float(stream.flush().sum())
        bar.close()
        seconds = time.perf_counter() - began
        figures: dict[str, Any] = dict(text.figures(nll, stream.count, read))
        figures["model_ppl"] = lm_figures(stream.model_nll, stream.count)["ppl"]
        figures["adapt"] = (
            settings.as_dict()
            | info
            | {
                "seconds": round(seconds, 3),
                "tokens_per_s": round(stream.count / max(seconds, 1e-9), 1),
            }
        )
        return figures

    def cache_replay(
        self, text: _Text, limit: int | None = None, progress: bool = False
    ) -> CacheReplay | None:
        """One forward pass over ``text`` (its first ``limit`` tokens) keeping what the cache
        sees, so that each cache-only setting is then scored without the model
        (:meth:`CacheReplay.evaluate`); None where the kept features would pass
        :data:`REPLAY_BYTES` (the caller then evaluates each setting in full)."""
        recorder = _Recorder()
        stream = AdaptiveStream(self.run.model.eval(), None, recorder, DynamicSettings().segment)
        read = 0
        bar = _bar(progress, min(text.total, limit or text.total))
        for ids in text.ids(limit):
            read += len(ids)
            stream.feed(ids)
            bar.update(len(ids))
            if recorder.nbytes > REPLAY_BYTES:
                bar.close()
                return None
        stream.flush()
        bar.close()
        if recorder.nbytes > REPLAY_BYTES:
            return None
        return CacheReplay(text, recorder.parts, read)

    def stream(
        self, settings: AdaptSettings, start: int | None = None
    ) -> tuple[AdaptiveStream, dict[str, Any]]:
        """A fresh :class:`AdaptiveStream` from the trained weights, and what it cost to prepare."""
        settings.check()
        model = self.run.model
        dynamic = None
        info: dict[str, Any] = {}
        if "dynamic" in settings.methods:
            ms, read, seconds = self.mean_square(settings.dynamic)
            model = copy.deepcopy(model)  # the run's model stays as trained
            dynamic = DynamicEval(model, settings.dynamic, ms)
            info = {"stats_tokens_read": read, "stats_seconds": round(seconds, 3)}
        model.eval()
        cache = NeuralCache(settings.cache) if "cache" in settings.methods else None
        return AdaptiveStream(model, dynamic, cache, settings.dynamic.segment, start), info


REPLAY_BYTES = 1 << 30
"""The most memory :meth:`Adapter.cache_replay` keeps (features of the text read)."""


class _Recorder(NeuralCache):
    """A cache that mixes nothing and keeps, segment by segment, what a cache would see:
    the features, the model's log-probabilities and the targets."""

    def __init__(self) -> None:
        super().__init__(CacheSettings(lam=0.0))
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []
        self.nbytes = 0

    def mix(self, h: Tensor, model_logp: Tensor, targets: Tensor) -> Tensor:
        part = (h.detach().cpu(), model_logp, targets.cpu())
        self.parts.append(part)
        self.nbytes += sum(t.numel() * t.element_size() for t in part)
        return model_logp


class CacheReplay:
    """A text's features as the model gave them (:meth:`Adapter.cache_replay`): a cache
    setting is scored by mixing them in the same segments as :meth:`Adapter.evaluate`
    reads, so its figures are that method's, bit for bit, at the cost of the mixing."""

    def __init__(self, text: _Text, parts: list[tuple[Tensor, Tensor, Tensor]], read: int) -> None:
        self.text, self.parts, self.read = text, parts, read
        self.count = sum(len(y) for _, _, y in parts)
        self.model_nll = -sum(float(logp.sum()) for _, logp, _ in parts)

    def evaluate(self, cache: CacheSettings) -> dict[str, Any]:
        """The figures of :meth:`Adapter.evaluate` with ``AdaptSettings(("cache",), cache=cache)``."""
        settings = AdaptSettings(("cache",), cache=cache)
        settings.check()
        began = time.perf_counter()
        mixer = NeuralCache(cache)
        nll = -sum(float(mixer.mix(h, logp, y).sum()) for h, logp, y in self.parts)
        seconds = time.perf_counter() - began
        figures: dict[str, Any] = dict(self.text.figures(nll, self.count, self.read))
        figures["model_ppl"] = lm_figures(self.model_nll, self.count)["ppl"]
        figures["adapt"] = settings.as_dict() | {
            "seconds": round(seconds, 3),
            "tokens_per_s": round(self.count / max(seconds, 1e-9), 1),
        }
        return figures


class LineScorer:
    """Lines scored in order as one stream the model adapts to (``score --adapt``): each
    line's tokens (its end included) are predicted from everything before them, the first
    line's from a sentence start; a segment never runs past a line's end, so each line's
    figures are final when it ends. :meth:`add` a line's tokens, in parts if it comes in
    pieces, then :meth:`end` for its figures (those of :func:`rnnkit.inference.score_line`)."""

    def __init__(
        self, run: LanguageModelRun, settings: AdaptSettings, data: str | Path | None, source: str
    ) -> None:
        start = run.codec.sentence_end
        self.vocab = run.vocab
        self.stream, info = Adapter(run, data).stream(
            settings, run.vocab.index(start) if start in run.vocab else None
        )
        self.settings = settings.as_dict() | info | {"source": source}
        self._fresh()

    def _fresh(self) -> None:
        self.logp: list[float] = []
        self.total, self.oov, self.begin = 0.0, 0, self.stream.count
        self.tokens: list[str] | None = []
        self.unknown: dict[str, None] = {}
        self.unknown_left_out = False

    def add(self, tokens: list[str]) -> None:
        """The next tokens of the current line."""
        from rnnkit.inference import LISTED_TOKENS, LISTED_UNKNOWN, as_read

        read, unknown = as_read(self.vocab, tokens)
        self.oov += len(unknown)
        for word in unknown:
            if word in self.unknown:
                continue
            if len(self.unknown) < LISTED_UNKNOWN:
                self.unknown[word] = None
            else:
                self.unknown_left_out = True
        if self.tokens is not None:
            self.tokens = self.tokens + read if len(self.tokens) + len(read) <= LISTED_TOKENS else None
        self._take(self.stream.feed([self.vocab.index(t) for t in read]))

    def _take(self, logp: Tensor) -> None:
        self.total += float(logp.sum())
        if self.tokens is not None:
            self.logp += logp.tolist()

    def end(self) -> dict[str, Any]:
        """The current line's figures; the next :meth:`add` starts a new line."""
        from rnnkit.inference import line_figures

        self._take(self.stream.flush())
        count = self.stream.count - self.begin
        out: dict[str, Any] = {}
        if self.tokens is not None:
            out["tokens"] = self.tokens[len(self.tokens) - count :] if count else []
            out["surprisal_bits"] = [-x / math.log(2) for x in self.logp]
        out |= line_figures(
            self.total, count, self.oov, self.unknown, self.tokens is not None, self.unknown_left_out
        )
        self._fresh()
        return out


def _bar(progress: bool, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="tok",
        unit_scale=True,
        disable=None if progress else True,
        leave=False,
        file=sys.stderr,
    )


def evaluate_adapted(
    run: LanguageModelRun,
    split: str,
    settings: AdaptSettings,
    data: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Figures of ``split`` read as one stream with adaptation (see :class:`AdaptiveStream`):
    ``loss``/``ppl``/``bits`` adapted, ``model_ppl`` the adapting model's own (without the
    cache's mixing), ``adapt`` the settings used and the cost (seconds, tokens/s, and for
    dynamic evaluation the gradient statistics' training tokens and seconds)."""
    return Adapter(run, data).evaluate(split_text(run, split, data), settings, progress=progress)


GRID_LR = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)
GRID_DECAY = (0.0, 0.001, 0.002, 0.005, 0.02)
GRID_THETA = (0.1, 0.3, 0.6, 1.0)
GRID_CACHE_LAMBDA = (0.05, 0.1, 0.2, 0.3)
GRID_WINDOW = (100, 500, 2000)


def tune(
    run: LanguageModelRun,
    methods: str = "dynamic,cache",
    budget_tokens: int = 20_000,
    budget_seconds: float = 600.0,
    data: str | Path | None = None,
    progress: bool = False,
    log: Any = None,
    dynamic: DynamicSettings | None = None,
) -> dict[str, Any]:
    """Search the settings of ``methods`` on the validation split only (its first
    ``budget_tokens`` tokens per trial) by coordinate search: η then λ for dynamic
    evaluation (from ``dynamic``'s values, default the papers'; its segment, ε and
    statistics stay as given), θ then λ then the window for the cache (searched first: its
    trials are cheap), each from the papers' values over a coarse grid, then once more over
    the values halfway to the best's neighbours (:func:`finer`).
    The two methods are searched apart (the pair of searches costs their sum, not their
    product); ``dynamic,cache`` then uses both choices, and a method not searched keeps the
    choice ``adapt.json`` already holds, with the record of the search that made it
    (``searches``: every search whose choice the file keeps; ``search``: the latest).
    No trial starts once ``budget_seconds`` are spent (the best so far is kept). Writes
    ``adapt.json`` atomically (Ctrl-C leaves the previous file, or none) and returns what it
    holds: the chosen settings and the search's cost (tokens, seconds, every trial)."""
    chosen = parse_methods(methods)
    if dynamic is not None and "dynamic" not in chosen:
        raise RnnkitError(
            "--segment and --stats-tokens are dynamic settings; they need --adapt dynamic (or dynamic,cache)"
        )
    best_dynamic, best_cache = dynamic or DynamicSettings(), CacheSettings()
    best_dynamic.check()
    _int_range("--budget-tokens", budget_tokens, 100, 10**9)
    if not (math.isfinite(budget_seconds) and budget_seconds > 0):
        raise RnnkitError(f"--budget-minutes must be a number above 0, got {budget_seconds / 60:g}")
    try:  # a method not searched now keeps its stored choice
        kept = load_settings(run.run_dir) or {}
    except RnnkitError:  # a corrupt file is replaced
        kept = {}
    text = split_text(run, "valid", data)
    adapter = Adapter(run, data)
    began = time.perf_counter()
    trials: list[dict[str, Any]] = []
    say = log or (lambda line: None)

    # the cache's trials replay one forward pass (each then costs the mixing alone)
    replay = adapter.cache_replay(text, budget_tokens, progress) if "cache" in chosen else None
    replayed: list[bool] = []

    def trial(settings: AdaptSettings) -> float:
        if replay is not None and settings.methods == ("cache",):
            figures = replay.evaluate(settings.cache)
            replayed.append(True)
        else:
            figures = adapter.evaluate(text, settings, limit=budget_tokens, progress=progress)
        finite = math.isfinite(figures["loss"])  # a rate so high that the weights blew up: the worst
        ppl = figures["ppl"] if finite and math.isfinite(figures["ppl"]) else None
        trials.append({**settings.as_dict(), "valid_ppl": ppl, "seconds": figures["adapt"]["seconds"]})
        say(f"{json.dumps(settings.as_dict())}: valid ppl {figures['ppl']:.3f}")
        return figures["loss"] if finite else math.inf

    stopped = []

    def over_time() -> bool:
        if time.perf_counter() - began > budget_seconds:
            stopped.append(True)
        return bool(stopped)

    baseline = (
        replay.evaluate(CacheSettings(lam=0.0))
        if replay is not None
        else adapter.evaluate(text, AdaptSettings(("cache",), cache=CacheSettings(lam=0.0)), budget_tokens)
    )
    say(f"no adaptation: valid ppl {baseline['ppl']:.3f} over the first {baseline['tokens']} tokens")
    # the cache first: its trials cost a forward pass, dynamic evaluation's a backward too
    if "cache" in chosen:
        best_cache = _coarse_to_fine(
            trial, over_time, lambda c: AdaptSettings(("cache",), cache=c), best_cache,
            (("theta", GRID_THETA), ("lam", GRID_CACHE_LAMBDA), ("window", GRID_WINDOW)),
        )  # fmt: skip
    if "dynamic" in chosen:
        best_dynamic = _coarse_to_fine(
            trial, over_time, lambda d: AdaptSettings(("dynamic",), dynamic=d), best_dynamic,
            (("lr", GRID_LR), ("decay", GRID_DECAY)),
        )  # fmt: skip
    seconds = time.perf_counter() - began
    record: dict[str, Any] = {"version": 1}
    for method, best in (("dynamic", best_dynamic), ("cache", best_cache)):
        if method in chosen:
            record[method] = dataclasses.asdict(best)
        elif kept.get(method) is not None:
            record[method] = dataclasses.asdict(kept[method])
    record["search"] = {
        "methods": sorted(chosen),
        "split": "valid",
        "tokens_per_trial": min(budget_tokens, text.total),
        "trials": len(trials),
        # validation tokens the model read: one pass for the baseline (and the cache's
        # replay), one per trial not replayed
        "tokens": (len(trials) - len(replayed) + 1) * min(budget_tokens, text.total),
        "replayed_trials": len(replayed),
        "stats_tokens": sum(v[1] for v in adapter._ms.values()),
        "seconds": round(seconds, 3),
        "budget_seconds": budget_seconds,
        "stopped_by_budget": bool(stopped),
        "grid": {
            "dynamic": {"lr": list(GRID_LR), "decay": list(GRID_DECAY)},
            "cache": {"theta": list(GRID_THETA), "lam": list(GRID_CACHE_LAMBDA), "window": list(GRID_WINDOW)},
        },
        "baseline_valid_ppl": baseline["ppl"],
        "history": trials,
    }
    record["searches"] = [*_still_standing(kept.get("record"), chosen), record["search"]]
    write_text_atomic(Path(run.run_dir) / ADAPT_FILE, json.dumps(record, indent=1) + "\n")
    return record


def _still_standing(before: Any, searched: Any) -> list[dict[str, Any]]:
    """The searches in ``adapt.json`` before (its ``searches``, or a file of one version-1
    ``search``) that chose a method not searched again now: their record is the record of a
    choice the new file keeps (``search`` is the latest search alone)."""
    if not isinstance(before, dict):
        return []
    earlier = before.get("searches")
    if not isinstance(earlier, list):
        earlier = [before["search"]] if isinstance(before.get("search"), dict) else []
    out = []
    for search in earlier:
        if not isinstance(search, dict):
            continue
        methods = search.get("methods")
        if not isinstance(methods, list):  # a file written before searches named their methods
            methods = sorted(
                {t.get("methods") for t in search.get("history", []) if isinstance(t, dict)} - {None}
            )
        if set(methods) - set(searched):
            out.append({**search, "methods": methods})
    return out


def _coarse_to_fine(trial, over_time, wrap, start, axes) -> Any:
    """Coordinate search over the grids ``axes``, then once more over :func:`finer` values
    around the best (each setting tried once)."""
    tried: dict[Any, float] = {}
    best = _coordinate(trial, over_time, wrap, start, axes, tried)
    return _coordinate(trial, over_time, wrap, best, finer(best, axes), tried)


def finer(best: Any, axes: Any) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """For each axis (name, grid), the values halfway between the best setting's value and its
    grid neighbours (geometrically: the grids are roughly geometric; arithmetically next to a
    0), and at the grid's edge one grid step beyond it (its ratio to the neighbour again).
    Two significant figures; whole-number axes stay whole. A best value of 0, or one off the
    grid, gets none."""
    out = []
    for name, grid in axes:
        value, grid = getattr(best, name), sorted(grid)
        if value not in grid or len(grid) < 2 or value == 0:
            continue
        i = grid.index(value)
        neighbours = [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid)]
        values = [(value + n) / 2 if n == 0 else math.sqrt(value * n) for n in neighbours]
        if len(neighbours) == 1 and neighbours[0] != 0:  # at an edge: one step beyond it
            values.append(value * value / neighbours[0])
        values = [round(v) if isinstance(value, int) else float(f"{v:.2g}") for v in values]
        out.append((name, tuple(sorted({v for v in values if v != value}))))
    return tuple(out)


def _coordinate(trial, over_time, wrap, start, axes, tried: dict[Any, float] | None = None) -> Any:
    """Coordinate search: along each axis in turn, keep the value with the lowest loss (a
    setting already in ``tried`` is not tried again)."""
    tried = {} if tried is None else tried
    if start not in tried:
        tried[start] = trial(wrap(start))
    best = start
    for name, values in axes:
        for value in values:
            if over_time():
                return best
            candidate = dataclasses.replace(best, **{name: value})
            if candidate not in tried:
                tried[candidate] = trial(wrap(candidate))
            if tried[candidate] < tried[best]:
                best = candidate
    return best
