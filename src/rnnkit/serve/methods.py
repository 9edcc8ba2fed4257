"""A batch of checked requests of one route, run on a loaded run: what the model thread calls.

Each method takes the requests gathered into one batch and returns their responses in the
same order. Scoring, tagging and classifying hand all the requests' lines or sentences to
:mod:`rnnkit.inference` at once (it pads them into batches of similar length) and split the
results back; :func:`next_batch` is ``next_distribution`` for many prefixes in one padded
pass; generation draws each request alone, with its own seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.inference import BATCH_TOKENS, ClassifierRun, LanguageModelRun, TaggerRun, Trained, context_ids
from rnnkit.models.language_model import LanguageModel

Method = Callable[[Trained, list[dict[str, Any]]], list[dict[str, Any]]]


def _split(requests: list[dict[str, Any]], key: str, results: list[Any]) -> list[list[Any]]:
    """``results`` of every request's ``key`` items, cut back into one list per request."""
    out, at = [], 0
    for request in requests:
        n = len(request[key])
        out.append(results[at : at + n])
        at += n
    return out


def score_lines_of(request: dict[str, Any]) -> list[str]:
    """The lines a score request asks for: ``lines``, or ``text`` cut at its newlines."""
    if "lines" in request:
        lines: list[str] = request["lines"]
        return lines
    text: str = request["text"]
    return text.removesuffix("\n").split("\n")


def score(trained: Trained, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = [score_lines_of(r) for r in requests]
    results = trained.score([line for group in lines for line in group])
    per = _split([{"lines": group} for group in lines], "lines", results)
    return [{"results": r} for r in per]


def next_tokens(trained: Trained, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert isinstance(trained, LanguageModelRun)  # the route is a language model's
    prefixes, ks = [r["text"] for r in requests], [r["k"] for r in requests]
    found = next_batch(trained.model, trained.vocab, trained.codec, prefixes, ks)
    return [{"next": [{"token": t, "p": p} for t, p in tops]} for tops in found]


def generate(trained: Trained, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in requests:  # one at a time: each draws from its own seed, as the Python API does
        options = {k: r[k] for k in ("max_tokens", "temperature", "top_k", "top_p", "seed")}
        out.append({"text": trained.generate(r["prompt"], stop_at_eos=r["stop"], **options)})
    return out


def tag(trained: Trained, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tags = trained.tag([s for r in requests for s in r["sentences"]])
    return [{"tags": t} for t in _split(requests, "sentences", tags)]


def classify(trained: Trained, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = trained.classify([s for r in requests for s in r["sentences"]])
    return [{"results": r} for r in _split(requests, "sentences", results)]


METHODS: dict[type[Trained], dict[str, tuple[Method, Callable[[dict[str, Any]], int], bool]]] = {
    LanguageModelRun: {
        "/v1/score": (score, lambda r: len(score_lines_of(r)), True),
        "/v1/next": (next_tokens, lambda r: 1, True),
        "/v1/generate": (generate, lambda r: 1, False),
    },
    TaggerRun: {"/v1/tag": (tag, lambda r: len(r["sentences"]), True)},
    ClassifierRun: {"/v1/classify": (classify, lambda r: len(r["sentences"]), True)},
}
"""Per kind of loaded run (what :func:`rnnkit.load` returns), its routes: the method, how many
items (lines, sentences, prompts) a request holds (what ``--max-batch`` counts) and whether
concurrent requests are batched."""

KINDS: dict[type[Trained], str] = {
    LanguageModelRun: "a language model",
    TaggerRun: "a tagger",
    ClassifierRun: "a classifier",
}
"""How the service names each kind of run in its messages."""


def routes_of(trained: Trained) -> dict[str, tuple[Method, Callable[[dict[str, Any]], int], bool]]:
    """The routes ``trained`` serves (none for a kind of run without methods)."""
    return next((routes for kind, routes in METHODS.items() if isinstance(trained, kind)), {})


def kind_name(trained: Trained) -> str:
    """``a language model``, ``a tagger``, ...: what ``trained`` is, in a message."""
    return next((name for kind, name in KINDS.items() if isinstance(trained, kind)), "a model")


@torch.no_grad()
def next_batch(
    model: LanguageModel, vocab: Vocab, codec: Codec, prefixes: list[str], ks: list[int]
) -> list[list[tuple[str, float]]]:
    """:func:`rnnkit.inference.next_distribution` of each prefix (its ``k`` likeliest next
    tokens), the prefixes run as padded batches of similar length (at most
    :data:`rnnkit.inference.BATCH_TOKENS` positions): each one's distribution is read at its
    last real position, so the padding after it never reaches it."""
    ids = [context_ids(vocab, codec, codec.prompt_tokens(p)) for p in prefixes]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    found: list[list[tuple[str, float]]] = [[] for _ in ids]
    group: list[int] = []
    for i in order:
        if group and (len(group) + 1) * len(ids[i]) > BATCH_TOKENS:
            _next_group(model, vocab, [ids[j] for j in group], [ks[j] for j in group], group, found)
            group = []
        group.append(i)
    if group:
        _next_group(model, vocab, [ids[j] for j in group], [ks[j] for j in group], group, found)
    return found


def _next_group(
    model: LanguageModel,
    vocab: Vocab,
    ids: list[list[int]],
    ks: list[int],
    where: list[int],
    found: list[list[tuple[str, float]]],
) -> None:
    """The next-token distributions of prefixes ``ids`` (shortest first) in one pass, into ``found``."""
    device = next(model.parameters()).device
    batch = torch.zeros(len(ids[-1]), len(ids), dtype=torch.long)
    for column, row in enumerate(ids):
        batch[: len(row), column] = torch.tensor(row)
    h, _ = model(batch.to(device))  # (L, N, H): padding comes after each prefix
    last = torch.tensor([len(row) - 1 for row in ids], device=device)
    probs = model.head.log_probs(h[last, torch.arange(len(ids), device=device)]).exp()
    top = probs.topk(min(max(ks), probs.shape[-1]), dim=-1)
    values, indices = top.values.tolist(), top.indices.tolist()
    for n, (i, k) in enumerate(zip(where, ks)):
        found[i] = [(vocab.tokens[t], p) for p, t in zip(values[n][:k], indices[n][:k])]
