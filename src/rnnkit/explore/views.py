"""The answers to the page's questions about one reading: surprisal and next tokens, tags or
classes, the gradient map, and the units a selected span turns on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rnnkit.analysis import gradient_flow as gf
from rnnkit.explore.reading import GATE_NAMES, MAX_CHARS, MAX_TOKENS, Reading
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.tasks.tagging import Tagging
from rnnkit.textsafe import printable

GRADIENT_TOKENS = 200
"""The gradient map covers the first this many tokens (a T x T map in float64)."""

UNITS_SHOWN, SNIPPETS, SNIPPET_RADIUS = 20, 5, 6


def analysis(reading: Reading, k: int) -> dict[str, Any]:
    """Surprisal and next tokens (a language model), tags (a tagger) or classes (a classifier)."""
    out: dict[str, Any] = {"tokens": reading.shown, "oov": reading.oov, "unknown": reading.unknown}
    kind = reading.run.kind
    if kind is LanguageModelling:
        out |= _language_model(reading, k)
    elif kind is Tagging:
        out |= _tagger(reading, k)
    else:
        out |= _classifier(reading)
    return out | {"notes": reading.notes, "limits": {"max_tokens": MAX_TOKENS, "max_chars": MAX_CHARS}}


@torch.no_grad()
def _language_model(reading: Reading, k: int) -> dict[str, Any]:
    """Each token's surprisal as ``rnnkit score`` computes it (:class:`~rnnkit.inference.LineScore`)
    and, after each token, the head's k most probable next tokens."""
    from rnnkit.inference import LineScore

    trained = reading.trained
    model, vocab, codec = trained.model, trained.vocab, trained.codec
    scorer = LineScore(model, vocab, codec, keep_features=True)
    scorer.add(reading.raw)
    scored = scorer.result()
    bits = scored["surprisal_bits"]
    surprisal = ([None] if not reading.offset else []) + bits
    h = scorer.next_features()  # the same pass: every position, then the one after the last token
    top = model.head.log_probs(h[reading.offset :]).exp().topk(min(k, len(vocab)), dim=-1)
    topk = [
        [[printable(codec.token_text(vocab.tokens[i])), p] for p, i in zip(ps, ids)]
        for ps, ids in zip(top.values.tolist(), top.indices.tolist())
    ]
    return {"surprisal_bits": surprisal, "topk": topk, "ppl": scored["ppl"], "oov_count": scored["oov"]}


@torch.no_grad()
def _tagger(reading: Reading, k: int) -> dict[str, Any]:
    """The run's tags (:meth:`~rnnkit.inference.TaggerRun.tag`) and the per-word softmax of its scores."""
    from rnnkit.data.conll import Sentence

    trained = reading.trained
    tags = trained.tag([reading.raw])[0]
    words, lengths, chars, _ = trained.task.tensors([Sentence(reading.raw)], with_tags=False)
    probs = torch.softmax(trained.model(words, lengths, chars)[:, 0].double(), -1)
    names = trained.tags.tokens
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    path = trained.model.decode(trained.model(words, lengths, chars), lengths)[0]
    return {
        "tags": [printable(t) for t in tags],
        "tag_probs": [probs[t, i].item() for t, i in enumerate(path)],
        "tag_topk": [
            [[printable(names[i]), p] for p, i in zip(ps, ids)]
            for ps, ids in zip(top.values.tolist(), top.indices.tolist())
        ],
        "crf": trained.model.crf is not None,
    }


def _classifier(reading: Reading) -> dict[str, Any]:
    """The run's class probabilities (:meth:`~rnnkit.inference.ClassifierRun.classify`) on the
    text and on each of its prefixes."""
    trained = reading.trained
    words = reading.raw
    whole = trained.classify([words])[0]
    over_time = trained.task.log_probs([words[:n] for n in range(1, len(words) + 1)]).exp()
    return {
        "classes": [printable(c) for c in trained.classes],
        "probs": whole["probs"],
        "predicted": whole["class"],
        "over_time": over_time.double().tolist(),
    }


def gradient(
    reading: Reading, index: int, workers: int = 1, carry: torch.dtype = torch.float64
) -> dict[str, Any]:
    """The map of ||∂E_t/∂h_k|| over the first :data:`GRADIENT_TOKENS` tokens, its mean by
    distance and, for Elman cells, the lecture's bound; the sweep's rows split over ``workers``
    threads, carried in ``carry``."""
    run, notes = reading.run, list(reading.notes)
    T = min(reading.steps, GRADIENT_TOKENS)
    if reading.steps > T:
        notes.append(f"gradient map of the first {T} tokens")
    offset = reading.offset
    recording = reading.recording(T)
    tr = recording.trace(index)
    # a classifier's one loss: one backward pass; per-step losses: one sweep for all of them
    one_loss = run.kind is Classification
    G = gf.gradient_matrix(tr) if one_loss else recording.gradient_map(index, workers, carry).copy()
    G = G[offset : offset + T, offset : offset + T]
    if run.kind is LanguageModelling:
        G[T - 1] = np.nan  # the last token's E (the next token's) is not shown
    reach = reachable(run.config.model, index, T)
    G = np.where(reach, G, np.nan)
    curve = gf.by_distance(G if one_loss else np.where(reach, G, 0.0), tr.reverse)
    bound = gf.elman_bound(tr)
    return {
        "tokens": reading.shown[:T],
        "map": _finite(G),
        "by_distance": [None if math.isnan(v) else float(v) for v in curve],
        "bound": None if bound is None else [bound["product"] ** d for d in range(T)],
        "beta": bound,
        "direction": "backward" if tr.reverse else "forward",
        "precision": "float64" if one_loss else str(carry).removeprefix("torch."),
        "notes": notes,
    }


def reachable(config: Any, index: int, T: int) -> np.ndarray:
    """Where E_t can depend on h_k: forward k <= t and backward k >= t in the top layer and in
    every layer of a one-way network; everywhere below the top of a bidirectional one."""
    D = 2 if config.bidirectional else 1
    layer, direction = divmod(index, D)
    t, k = np.indices((T, T))
    if D == 2 and layer < config.num_layers - 1:
        return np.ones((T, T), dtype=bool)
    return k >= t if direction == 1 else k <= t


def _finite(G: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in G.tolist()]


def default_threshold(quantity: str, lo: float, hi: float) -> float:
    """Where a unit counts as on: 0.5 for a gate, else 30% of the way from 0 to the range's top."""
    return 0.5 if quantity in GATE_NAMES else 0.3 * hi


def on_units(values: np.ndarray, start: int, end: int) -> list[dict[str, Any]]:
    """The units most on inside tokens [start, end) and off around it: mean inside minus mean
    over as many tokens on each side (all others if fewer; none: the inside alone), best first."""
    T = values.shape[0]
    width = end - start
    around = [*range(max(0, start - width), start), *range(end, min(T, end + width))]
    inside = values[start:end].mean(0)
    outside = values[around].mean(0) if around else None
    score = inside - (outside if outside is not None else 0.0)
    order = np.argsort(-score, kind="stable")[:UNITS_SHOWN]
    return [
        {
            "unit": int(u),
            "inside": float(inside[u]),
            "outside": None if outside is None else float(outside[u]),
            "score": float(score[u]),
        }
        for u in order
    ]


def snippets(sample: list[tuple[list[str], np.ndarray]], unit: int, threshold: float) -> list[dict[str, Any]]:
    """Up to :data:`SNIPPETS` places in ``sample`` where ``unit`` is above ``threshold``: the
    tokens around each and which of them have it on."""
    found: list[dict[str, Any]] = []
    for tokens, values in sample:
        on = values[:, unit] > threshold
        t = 0
        while t < len(tokens) and len(found) < SNIPPETS:
            if on[t]:
                a, b = max(0, t - SNIPPET_RADIUS), min(len(tokens), t + SNIPPET_RADIUS + 1)
                found.append({"tokens": tokens[a:b], "on": on[a:b].tolist()})
                t = b
            else:
                t += 1
        if len(found) >= SNIPPETS:
            break
    return found
