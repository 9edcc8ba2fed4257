"""Dynamic evaluation, the neural cache, and the stream that scores each segment before adapting on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.adapt.settings import CacheSettings, DynamicSettings
from rnnkit.cells.base import detach_state
from rnnkit.errors import RnnkitError
from rnnkit.models.language_model import LanguageModel

CACHE_CHUNK = 256
"""Tokens read per forward pass by the cache alone (the weights do not change: any chunk
gives the same figures, to rounding)."""


# -- the two methods ---------------------------------------------------------------------------------


def gradient_statistics(
    model: LanguageModel, ids: Tensor, segment: int, batch: int
) -> tuple[list[Tensor], int]:
    """MS of Krause et al. §5: the mean over windows of the squared gradient of each weight,
    the windows ``segment`` tokens of ``batch`` columns of the (training) stream ``ids``, the
    loss each window's mean NLL, the state carried (and detached) from window to window.
    Returns MS per parameter and how many tokens were read."""
    columns = ids.numel() // batch
    if columns < 2:
        raise RnnkitError(
            f"dynamic evaluation: {ids.numel()} training tokens are too few for gradient statistics "
            f"over {batch} columns; lower --stats-batch or raise --stats-tokens"
        )
    device = next(model.parameters()).device
    stream = ids[: columns * batch].view(batch, columns).T.contiguous().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    squares = [torch.zeros_like(p) for p in params]
    state, windows = None, 0
    model.eval()  # the weights as evaluation sees them: no dropout
    for i in range(0, columns - 1, segment):
        x, y = stream[i : min(i + segment, columns - 1)], stream[i + 1 : min(i + segment, columns - 1) + 1]
        logp, state = model.log_prob(x, y, state)
        grads = torch.autograd.grad(-logp.mean(), params, materialize_grads=True)
        torch._foreach_addcmul_(squares, grads, grads)
        state = detach_state(state)  # truncated: a window's gradient stops at its start
        windows += 1
    torch._foreach_div_(squares, float(windows))
    return squares, columns * batch


class DynamicEval:
    r"""Krause et al. 2018's dynamic evaluation, "RMS with a global prior" (§5).

    After each segment :math:`s_g` has been scored, with :math:`\nabla L(s_g)` the gradient of
    its mean NLL and :math:`\theta_l` the trained weights:

    .. math::
        \theta_g = \theta_{g-1} - \eta\,\frac{\nabla L(s_{g-1})}{\sqrt{MS} + \epsilon}
                   + \lambda\,\mathrm{RMS_{norm}} \odot (\theta_l - \theta_{g-1}),\qquad
        \mathrm{RMS_{norm}} = \frac{\sqrt{MS}}{\operatorname{avg}(\sqrt{MS})}

    :math:`MS` is :func:`gradient_statistics` on the training data: weights whose gradients
    were large in training move more and decay faster. :math:`\lambda\,\mathrm{RMS_{norm}}`
    is clipped at 1 so that no decay overshoots :math:`\theta_l`.

    .. note::
        The average of :math:`\sqrt{MS}` is taken over parameter tensors of their means, as
        the authors' released code does (their tuned η and λ are in those units).

    Args:
        model: the model to adapt, in place (a copy of the trained one).
        settings: η, λ, ε (:class:`DynamicSettings`).
        mean_square: MS per parameter, in ``model.parameters()`` order (those requiring grad).
    """

    def __init__(self, model: LanguageModel, settings: DynamicSettings, mean_square: list[Tensor]) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        if len(mean_square) != len(self.params):
            raise ValueError("one MS per parameter expected")
        theta0 = [p.detach().clone() for p in self.params]
        rms = [ms.sqrt() for ms in mean_square]
        average = sum(float(r.mean()) for r in rms) / max(len(rms), 1)
        # θ + λRMS_norm ⊙ (θ_l − θ): one lerp toward θ_l, then the gradient step (two passes)
        self.decay = [(settings.decay * r / max(average, 1e-300)).clamp(max=1.0) for r in rms]
        self.step_scale = [settings.lr / (r + settings.eps) for r in rms]
        self.theta0 = theta0
        # The embedding is read a row per input token: a row no segment reads only decays, so
        # its decay is applied when it is next read, k steps at once ((1 - λRMS_norm)^k).
        emb = model.embedding.weight
        shared = any(p is emb for p in model.head.parameters())  # tied weights: read whole
        self.lazy = next((i for i, p in enumerate(self.params) if p is emb), None) if not shared else None
        self.dense = [i for i in range(len(self.params)) if i != self.lazy]
        self.keep = None if self.lazy is None else 1 - self.decay[self.lazy]  # what a row keeps a step
        self.steps = 0
        self.seen = torch.zeros(emb.shape[0], dtype=torch.long, device=emb.device)

    @torch.no_grad()
    def prepare(self, inputs: Tensor) -> None:
        """Bring the embedding rows that ``inputs`` will read up to date (their pending decay)."""
        if self.lazy is None:
            return
        rows = inputs.flatten().unique()
        behind = self.steps - self.seen[rows]
        if bool((behind > 0).any()):
            i = self.lazy
            theta0 = self.theta0[i][rows]
            weight = self.params[i].data
            weight[rows] = theta0 + self.keep[rows].pow(behind[:, None]) * (weight[rows] - theta0)
            self.seen[rows] = self.steps

    @torch.no_grad()
    def _apply(self, grads: Sequence[Tensor], inputs: Tensor) -> None:
        dense = [self.params[i].data for i in self.dense]
        torch._foreach_lerp_(dense, [self.theta0[i] for i in self.dense], [self.decay[i] for i in self.dense])
        torch._foreach_addcmul_(
            dense, [grads[i] for i in self.dense], [self.step_scale[i] for i in self.dense], value=-1.0
        )
        if self.lazy is not None:  # the rows read (the only ones with a gradient), already up to date
            i, rows = self.lazy, inputs.flatten().unique()
            weight = self.params[i].data
            weight[rows] = (
                weight[rows].lerp(self.theta0[i][rows], self.decay[i][rows])
                - self.step_scale[i][rows] * grads[i][rows]
            )
            self.seen[rows] = self.steps + 1
        self.steps += 1

    def weights(self) -> list[Tensor]:
        """The adapted weights as they are now (every embedding row's pending decay applied)."""
        if self.lazy is not None:
            self.prepare(torch.arange(self.seen.numel(), device=self.seen.device))
        return [p.detach() for p in self.params]

    def update(self, loss: Tensor, inputs: Tensor) -> None:
        """One step on ``loss`` (a scored segment's mean NLL, its graph still there) whose
        segment read the token ids ``inputs``."""
        grads = torch.autograd.grad(loss, self.params, materialize_grads=True)
        self._apply(grads, inputs)


class NeuralCache:
    r"""Grave et al. 2017's continuous cache (§3), in a window of constant size.

    .. math::
        p_{cache}(w \mid h_{1..t}) \propto \sum_{i=t-W}^{t-1} [x_{i+1} = w]\,
            \exp(\theta\, h_t^\top h_i),\qquad
        p(w) = (1 - \lambda)\, p_{model}(w) + \lambda\, p_{cache}(w)

    The pairs :math:`(h_i, x_{i+1})` are the hidden state fed to the output layer and the
    token that followed it; only the last ``window`` pairs are held. Scoring a token needs
    :math:`p_{model}` of that token only (no full distribution, whatever the output head);
    while the cache is still empty (the stream's first token) :math:`p = p_{model}`.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.keys: Tensor | None = None  # (≤ window, H), oldest first
        self.values = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[0]

    @torch.no_grad()
    def mix(self, h: Tensor, model_logp: Tensor, targets: Tensor) -> Tensor:
        """log p of ``targets`` (n,) after features ``h`` (n, H) whose model log-probabilities
        are ``model_logp`` (n,): each position sees the pairs before it only. The ``n`` new
        pairs are then held (the oldest beyond the window dropped)."""
        s = self.settings
        h = h.detach().double().cpu()
        targets = targets.cpu()
        held = len(self)
        keys = h if self.keys is None else torch.cat([self.keys, h])
        values = torch.cat([self.values, targets])
        n = h.shape[0]
        j = torch.arange(held + n)[None, :]
        t = torch.arange(n)[:, None] + held  # where each position's own pair sits
        seen = (j < t) & (j >= t - s.window)
        scores = (s.theta * (h @ keys.T)).masked_fill(~seen, -math.inf)
        hit = seen & (values[None, :] == targets[:, None])
        log_cache = scores.masked_fill(~hit, -math.inf).logsumexp(1) - scores.logsumexp(1)
        mixed = torch.logaddexp(math.log1p(-s.lam) + model_logp, _log(s.lam) + log_cache)
        self.keys, self.values = keys[-s.window :].clone(), values[-s.window :].clone()
        return torch.where(seen.any(1), mixed, model_logp)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


class AdaptiveStream:
    """A text read as one stream, scored a segment at a time with the state carried, each
    segment scored before the model adapts on it (:class:`DynamicEval` and/or
    :class:`NeuralCache`).

    ``feed`` ids as they come and ``flush`` at the end (or where a part of the text must
    have its figures: a segment then ends early); both return the log-probabilities (nats,
    float64) of the tokens scored. With ``start`` (a sentence start's id) the first token is
    predicted from it; without, the first token is context only, as in plain evaluation.
    """

    def __init__(
        self,
        model: LanguageModel,
        dynamic: DynamicEval | None,
        cache: NeuralCache | None,
        segment: int,
        start: int | None = None,
    ) -> None:
        self.model, self.dynamic, self.cache = model, dynamic, cache
        self.segment = segment if dynamic is not None else max(segment, CACHE_CHUNK)
        self.device = next(model.parameters()).device
        self.last, self.state = start, None
        self.pending: list[int] = []
        self.model_nll = 0.0  # the (adapting) model's own NLL, before the cache's mixing
        self.count = 0

    def feed(self, ids: Sequence[int]) -> Tensor:
        """Add ``ids``; score every full segment."""
        ids = list(ids)
        if self.last is None and ids:
            self.last, ids = ids[0], ids[1:]
        self.pending += ids
        full = len(self.pending) - len(self.pending) % self.segment
        return self._score(full)

    def flush(self) -> Tensor:
        """Score what is pending (a shorter segment)."""
        return self._score(len(self.pending))

    def _score(self, upto: int) -> Tensor:
        parts = [self._segment(self.pending[i : i + self.segment]) for i in range(0, upto, self.segment)]
        del self.pending[:upto]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def _segment(self, targets: list[int]) -> Tensor:
        x = torch.tensor([self.last, *targets[:-1]], device=self.device)[:, None]
        y = torch.tensor(targets, device=self.device)
        if self.dynamic is not None:
            self.dynamic.prepare(x)
        with torch.set_grad_enabled(self.dynamic is not None):
            h, state = self.model(x, self.state)
            logp = self.model.head.log_prob(h[:, 0], y)
        model_logp = logp.detach().double().cpu()
        self.model_nll -= float(model_logp.sum())
        self.count += len(targets)
        out = model_logp if self.cache is None else self.cache.mix(h[:, 0], model_logp, y)
        if self.dynamic is not None:  # only now, once the segment has been scored
            self.dynamic.update(-logp.mean(), x)
        self.state, self.last = detach_state(state), targets[-1]
        return out
