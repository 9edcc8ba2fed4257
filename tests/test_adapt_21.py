"""Dynamic evaluation and the neural cache (issue 21, items 1 and 2): the update and the cache
against hand computations, no token influencing its own probability, plain evaluation when
the rates are 0, a window of constant size, and a real gain on a repetitive text."""

from __future__ import annotations

import copy
import dataclasses
import math
import random

import pytest
import torch

import rnnkit
from conftest import write_toy_lm_corpus
from rnnkit.adapt import (
    AdaptiveStream,
    AdaptSettings,
    CacheSettings,
    DynamicEval,
    DynamicSettings,
    NeuralCache,
)
from rnnkit.cells.base import detach_state
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.models.config import build_model

V = 6
HEADS = {
    "full": {"embed_size": 4},
    "adaptive": {"embed_size": 4, "head": "adaptive", "cutoffs": [3]},
    "tied": {"embed_size": 5, "tie_weights": True},  # the embedding is the head's too: read whole
}


def tiny_model(cell: str = "lstm", head: str = "full", seed: int = 0) -> torch.nn.Module:
    """A float64 language model of 6 words with random weights (no training needed)."""
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, hidden_size=5, num_layers=2, **HEADS[head])
    model = build_model(config, V).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.8, 0.8)  # large enough that one step changes the probabilities visibly
    return model


def random_ms(model: torch.nn.Module, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.1 + 1e-3 for p in model.parameters()]


def stream_logp(model, ids, methods, dynamic=None, cache=None, segment=3, ms=None) -> torch.Tensor:
    """Per-token log-probabilities of ``ids`` (the first is context) read by a fresh stream
    over a copy of ``model``."""
    model = copy.deepcopy(model)
    dyn = None
    if "dynamic" in methods:
        dyn = DynamicEval(model, dynamic or DynamicSettings(lr=0.05, decay=0.1), ms or random_ms(model))
    neural = NeuralCache(cache or CacheSettings(window=4, theta=1.0, lam=0.3)) if "cache" in methods else None
    stream = AdaptiveStream(model, dyn, neural, segment)
    return torch.cat([stream.feed(ids), stream.flush()])


IDS = [random.Random(3).randrange(V) for _ in range(14)]


@pytest.mark.parametrize("methods", [("dynamic",), ("cache",), ("dynamic", "cache")])
@pytest.mark.parametrize("cell,head", [("lstm", "full"), ("gru", "adaptive"), ("elman", "tied")])
def test_no_token_influences_its_own_probability(methods, cell, head):
    """Put each word of the vocabulary at position t: the tokens before t keep their
    probabilities, and the probabilities of the V words at t sum to 1 (a method that learnt
    from token t before scoring it would give each word more, and the sum would pass 1)."""
    model = tiny_model(cell, head)
    base = stream_logp(model, IDS, methods)
    for t in (4, 7, 11):  # the middle, the start and the end of a segment of 3 (ids[0] is context)
        total = 0.0
        for v in range(V):
            ids = [*IDS[:t], v, *IDS[t + 1 :]]
            logp = stream_logp(model, ids, methods)
            assert torch.equal(logp[: t - 1], base[: t - 1])
            total += math.exp(logp[t - 1])
        assert total == pytest.approx(1.0, abs=1e-10)


def peeking_logp(model, ids, segment=3) -> torch.Tensor:
    """Dynamic evaluation done wrong: each segment adapted on before it is scored."""
    model = copy.deepcopy(model)
    dyn = DynamicEval(model, DynamicSettings(lr=0.05, decay=0.1), random_ms(model))
    state, out = None, []
    for i in range(1, len(ids), segment):
        x, y = torch.tensor(ids[i - 1 : i - 1 + segment]), torch.tensor(ids[i : i + segment])
        x = x[: len(y)]
        dyn.prepare(x)
        h, _ = model(x[:, None], state)
        dyn.update(-model.head.log_prob(h[:, 0], y).mean(), x)
        dyn.prepare(x)
        h, state = model(x[:, None], state)
        out.append(model.head.log_prob(h[:, 0], y).detach())
        state = detach_state(state)
    return torch.cat(out)


def test_the_no_peeking_check_catches_a_method_that_peeks():
    """The check above can fail: on the peeking variant the V words' probabilities sum past 1."""
    model = tiny_model()
    t = 7
    total = sum(math.exp(peeking_logp(model, [*IDS[:t], v, *IDS[t + 1 :]])[t - 1]) for v in range(V))
    assert total > 1.01


def test_the_cache_distribution_equals_a_hand_computed_one_on_three_words():
    theta, lam, window = 0.7, 0.25, 3
    g = torch.Generator().manual_seed(0)
    h = torch.randn(6, 2, generator=g, dtype=torch.float64)
    model_p = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), 1)  # 3 words
    targets = [0, 2, 0, 1, 2, 0]
    cache = NeuralCache(CacheSettings(window=window, theta=theta, lam=lam))
    got = []
    for t in range(6):  # one position at a time, and each word's probability at that position
        probs = []
        for w in range(3):
            trial = copy.deepcopy(cache)
            probs.append(math.exp(trial.mix(h[t : t + 1], model_p[t, w].log()[None], torch.tensor([w]))[0]))
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        got.append(probs)
        cache.mix(h[t : t + 1], model_p[t, targets[t]].log()[None], torch.tensor([targets[t]]))
    for t in range(6):
        seen = list(range(max(0, t - window), t))
        weights = {i: math.exp(theta * float(h[t] @ h[i])) for i in seen}
        for w in range(3):
            p_cache = (
                sum(weights[i] for i in seen if targets[i] == w) / sum(weights.values()) if seen else 0.0
            )
            want = (1 - lam) * float(model_p[t, w]) + lam * p_cache if seen else float(model_p[t, w])
            assert got[t][w] == pytest.approx(want, rel=1e-12)
    # the same, all six positions scored in one call: each sees only the pairs before it
    whole = NeuralCache(CacheSettings(window=window, theta=theta, lam=lam))
    logp = whole.mix(h, model_p[torch.arange(6), targets].log(), torch.tensor(targets))
    torch.testing.assert_close(
        logp.exp(), torch.tensor([got[t][targets[t]] for t in range(6)], dtype=torch.float64)
    )


def test_the_cache_holds_at_most_its_window_whatever_the_length():
    model = tiny_model()
    cache = NeuralCache(CacheSettings(window=7, theta=1.0, lam=0.2))
    stream = AdaptiveStream(model, None, cache, 5)
    ids = [random.Random(0).randrange(V) for _ in range(3000)]
    for i in range(0, 3000, 100):
        stream.feed(ids[i : i + 100])
        assert len(cache) <= 7 and cache.values.numel() <= 7
    assert len(cache) == 7


@pytest.mark.parametrize("cell,head", [("lstm", "adaptive"), ("gru", "tied")])
def test_the_dynamic_update_equals_a_hand_computed_one(cell, head):
    """Three segments of 4 (the last of 2) against the update written out: θ ← θ − η g/(√MS + ε)
    + min(λ √MS / avg, 1) ⊙ (θ_l − θ), avg the mean over tensors of their mean √MS."""
    s = DynamicSettings(lr=0.03, decay=0.2, eps=1e-3)
    model = tiny_model(cell, head)
    ms = random_ms(model)
    ids = [1, 4, 2, 0, 3, 4, 1, 1, 2, 5, 3]  # segment 3 reads neither word 0 nor word 4: lazy decay
    adapted = copy.deepcopy(model)
    dyn = DynamicEval(adapted, s, ms)
    stream = AdaptiveStream(adapted, dyn, None, 4)
    stream.feed(ids)
    stream.flush()
    # by hand
    hand = copy.deepcopy(model)
    params = list(hand.parameters())
    theta0 = [p.detach().clone() for p in params]
    rms = [m.sqrt() for m in ms]
    avg = sum(float(r.mean()) for r in rms) / len(rms)
    decay = [torch.clamp(s.decay * r / avg, max=1.0) for r in rms]
    state = None
    for i in range(0, len(ids) - 1, 4):
        x, y = torch.tensor(ids[i : i + 5][:-1]), torch.tensor(ids[i + 1 : i + 5])
        x = x[: len(y)]
        h, state = hand(x[:, None], state)
        loss = -hand.head.log_prob(h[:, 0], y).mean()
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        with torch.no_grad():
            for p, g, p0, r, d in zip(params, grads, theta0, rms, decay):
                p.copy_(p - s.lr * g / (r + s.eps) + d * (p0 - p))
        state = detach_state(state)
    for mine, want in zip(dyn.weights(), params):
        torch.testing.assert_close(mine, want.detach(), rtol=1e-12, atol=1e-14)
    assert not all(torch.equal(a, b) for a, b in zip(dyn.weights(), theta0))  # it did move


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_with_rates_of_zero_both_methods_are_plain_evaluation(head):
    model = tiny_model("gru", head)
    ids = [random.Random(5).randrange(V) for _ in range(40)]
    with torch.no_grad():
        h, _ = model(torch.tensor(ids[:-1])[:, None])
        plain = model.head.log_prob(h[:, 0], torch.tensor(ids[1:]))
    zero = DynamicSettings(lr=0.0, decay=0.3)
    no_cache = CacheSettings(window=10, theta=1.0, lam=0.0)
    cases = [("dynamic",), ("cache",), ("dynamic", "cache")]
    for methods in cases:
        logp = stream_logp(model, ids, methods, zero, no_cache, segment=7)
        torch.testing.assert_close(logp, plain, rtol=0, atol=1e-13)
    assert torch.equal(stream_logp(model, ids, ("cache",), cache=no_cache), plain)  # one pass: bit for bit


# -- on a trained run: a real gain on a text that repeats itself ------------------------------------


@pytest.fixture(scope="module")
def repeat_run(tmp_path_factory):
    """A tiny model trained on random lines of 30 words, whose validation text repeats 6
    lines of 5 of those words 8 times: the recent past says much that the model does not."""
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("adapt"), vocab=30, train=300)
    rng = random.Random(0)
    lines = [" ".join(f"w{rng.randrange(5)}" for _ in range(8)) for _ in range(6)]
    (root / "valid.txt").write_text("\n".join(lines * 8) + "\n")
    run = root / "run"
    tiny = ["--model.hidden_size=16", "--model.embed_size=16", "--train.epochs=2", "--train.threads=1"]
    tiny += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress", "--train.bptt=8"]
    assert main(["train", "--data", str(root), "--out", str(run), *tiny]) == 0
    return run


def test_adaptation_lowers_perplexity_on_a_repetitive_text(repeat_run):
    run = rnnkit.load(repeat_run)
    before = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    plain = run.evaluate("valid", adapt="cache", cache_lambda=0.0)
    cache = run.evaluate("valid", adapt="cache")
    dynamic = run.evaluate("valid", adapt="dynamic", lr=1e-3, stats_batch=4)
    both = run.evaluate("valid", adapt="dynamic,cache", lr=1e-3, stats_batch=4)
    assert cache["model_ppl"] == plain["ppl"] == plain["model_ppl"]
    assert cache["ppl"] < 0.9 * plain["ppl"]
    assert dynamic["ppl"] < 0.9 * plain["ppl"]
    assert both["ppl"] < min(cache["ppl"], dynamic["ppl"])
    assert dynamic["adapt"]["dynamic"]["lr"] == 1e-3 and dynamic["adapt"]["source"] == "defaults and options"
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the run's own weights: as trained


def test_settings_out_of_range_are_one_line_errors():
    from rnnkit.errors import RnnkitError

    bad = [
        (DynamicSettings(lr=math.nan), "--adapt-lr"),
        (DynamicSettings(segment=0), "--segment"),
        (CacheSettings(lam=1.0), "--cache-lambda"),
        (CacheSettings(window=0), "--cache-window"),
    ]
    for settings, option in bad:
        with pytest.raises(RnnkitError, match=option):
            settings.check()
    with pytest.raises(RnnkitError, match="--adapt"):
        rnnkit.adapt.parse_methods("dynamic,dynamic")
    assert dataclasses.asdict(AdaptSettings(("cache",)).cache) == {"window": 500, "theta": 1.0, "lam": 0.1}


@pytest.mark.parametrize("limit", [None, 37])
def test_a_cache_replay_gives_the_figures_of_a_full_evaluation(repeat_run, limit, monkeypatch):
    """The search's cache trials mix features recorded once: each setting's figures must be
    those of evaluating the text again with it, bit for bit (same segments, same sums)."""
    from rnnkit.adapt import run as adapt_run

    lm = rnnkit.load(repeat_run)
    adapter = adapt_run.Adapter(lm)
    text = adapt_run.split_text(lm, "valid")
    replay = adapter.cache_replay(text, limit)
    assert replay is not None and replay.count == (limit or text.total) - 1
    for cache in (CacheSettings(), CacheSettings(window=7, theta=0.3, lam=0.25), CacheSettings(lam=0.0)):
        full = adapter.evaluate(text, AdaptSettings(("cache",), cache=cache), limit=limit)
        again = replay.evaluate(cache)
        assert again["ppl"] == full["ppl"] and again["model_ppl"] == full["model_ppl"]
        assert {k: v for k, v in again.items() if k != "adapt"} == {
            k: v for k, v in full.items() if k != "adapt"
        }
    monkeypatch.setattr(adapt_run, "REPLAY_BYTES", 100)  # too little memory: no replay kept
    assert adapter.cache_replay(text, limit) is None
