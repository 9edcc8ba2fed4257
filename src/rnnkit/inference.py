"""Inference on a trained run, for every task: what the CLI's verbs and the Python API call.

:func:`load` rebuilds any run directory with no flags and returns one object: a
:class:`LanguageModelRun` (``generate``, ``score``, ``next``), a :class:`TaggerRun` (``tag``)
or a :class:`ClassifierRun` (``classify``), each with its ``model``, ``config``, ``vocab`` and
``codec`` and ``evaluate``/``report`` on the run's corpus or another. It unpacks as the tuple
``model, vocab, config, codec`` that :func:`load` returned before it served every task.

The functions below the classes are the language model's, on a model, vocabulary and codec.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import RunConfig
from rnnkit.data.conll import Sentence
from rnnkit.data.corpora import locate
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks import Task, task_kind
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.lm import LanguageModelling, evaluate_file, evaluate_tokens, heldout_tokens
from rnnkit.tasks.tagging import Tagging
from rnnkit.training.run import read_config, recorded_data
from rnnkit.training.rundir import RunDir


def load(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Trained:
    """The trained run in ``run_dir``, whatever its task, its model in eval mode on ``device``.

    ``which`` is the checkpoint: ``best`` (by validation) or ``last``. Works for a run trained
    on a GPU and loaded on a CPU: weights are plain tensors.
    """
    RunDir(run_dir).checkpoint(which)  # "best" or "last", else a one-line error
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    device = torch.device(device)
    task = task_kind(config.task).from_run(run_dir, config, device, which=which)
    kind = next((k for t, k in _KINDS.items() if isinstance(task, t)), Trained)
    return kind(task, config, run_dir, which, device)


class Trained:
    """A trained run of any task (see :func:`load`).

    Attributes:
        model: the network, in eval mode.
        config: the run's configuration (:class:`rnnkit.config.RunConfig`).
        vocab: the vocabulary the model reads (a tagger's and a classifier's: of words).
        codec: a language model's text <-> tokens (:class:`rnnkit.data.text.Codec`); None for
            taggers and classifiers, which read words split on whitespace.
        task: the task object (:class:`rnnkit.tasks.Task`) the run was rebuilt as.
        run_dir: where the run is.
    """

    def __init__(
        self, task: Task, config: RunConfig, run_dir: Path, which: str, device: torch.device
    ) -> None:
        self.task, self.config, self.run_dir, self.which, self.device = task, config, run_dir, which, device
        self.model = task.model
        self.vocab: Vocab | None = None
        self.codec: Codec | None = None
        self._held_out: dict[str, Task] = {}  # the task on another corpus's splits, by its data

    def __iter__(self) -> Iterator[Any]:
        """``model, vocab, config, codec = rnnkit.load(run)``, as before every task loaded."""
        return iter((self.model, self.vocab, self.config, self.codec))

    def __getitem__(self, index: int) -> Any:
        return tuple(self)[index]

    def __len__(self) -> int:
        return 4

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.task!r} run {str(self.run_dir)!r}>"

    # -- every task ---------------------------------------------------------------------------------
    def evaluate(self, split: str = "test", data: str | Path | None = None) -> dict[str, float]:
        """Figures on ``split`` (``valid`` or ``test``) of ``data`` (default: the corpus the run
        was trained on, as recorded in its data.json)."""
        return self._on(split, data).evaluate(split)

    def report(self, split: str = "test", data: str | Path | None = None) -> dict[str, Any]:
        """Per-label scores and the confusion matrix on ``split`` of ``data`` (taggers and classifiers)."""
        return self._on(split, data).report(split)

    def describe(self, split: str, figures: dict[str, float]) -> str:
        """One human line of ``figures`` (what :meth:`evaluate` returned)."""
        return self.task.describe(split, figures)

    def fields(self) -> dict[str, str]:
        """What a JSON report of this run's figures says besides them (a language model's unit)."""
        return task_kind(self.config.task).fields(self.config)

    def _on(self, split: str, data: str | Path | None) -> Task:
        """The run's task on the held-out splits of ``data``, with this object's weights."""
        data = data if data is not None else recorded_data(self.run_dir)["data"]
        if data is None:
            raise RnnkitError(f"{self.run_dir}: no corpus recorded for the run; pass its data")
        task = self._held_out.get(str(data))
        if task is None:  # read once: evaluate and report of one corpus share it
            kind = task_kind(self.config.task)
            task = self._held_out[str(data)] = kind.from_run(
                self.run_dir, self.config, self.device, data, self.which
            )
        task.model.load_state_dict(self.model.state_dict())  # this object's model, as it is now
        if not task.has_split(split):
            hint = "; try --split valid" if split == "test" and task.has_split("valid") else ""
            raise RnnkitError(f"{data}: the corpus has no {split} split{hint}")
        return task

    # -- one task's methods, refused in one line on another's run --------------------------------
    def _refuse(self, method: str, needs: str) -> RnnkitError:
        return RnnkitError(f"{self.run_dir}: a {self.config.task!r} run; {method} needs {needs}")

    def generate(self, *args: Any, **kwargs: Any) -> str:
        raise self._refuse("generate", "a language model (task 'lm')")

    def score(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise self._refuse("score", "a language model (task 'lm')")

    def next(self, *args: Any, **kwargs: Any) -> list[tuple[str, float]]:
        raise self._refuse("next", "a language model (task 'lm')")

    def tag(self, *args: Any, **kwargs: Any) -> list[list[str]]:
        raise self._refuse("tag", "a tagger (task 'tag')")

    def classify(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise self._refuse("classify", "a classifier (task 'classify')")


class LanguageModelRun(Trained):
    """A trained language model: :meth:`generate`, :meth:`score`, :meth:`next`."""

    task: LanguageModelling
    model: LanguageModel
    vocab: Vocab
    codec: Codec

    def __init__(
        self, task: LanguageModelling, config: RunConfig, run_dir: Path, which: str, device: torch.device
    ) -> None:
        super().__init__(task, config, run_dir, which, device)
        self.vocab, self.codec = task.corpus.vocab, task.corpus.codec

    def generate(
        self,
        prompt: str = "",
        max_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        stop_at_eos: bool = True,
        with_prompt: bool = False,
        seed: int | None = None,
    ) -> str:
        """A sampled continuation of ``prompt`` as text (after the prompt with ``with_prompt``).

        ``max_tokens`` defaults to 400 for character and symbol models, else 50; ``seed``
        (or a ``generator``, drawn on across calls) makes it repeat. See :func:`generate`.
        """
        if max_tokens is None:  # a character is a short token: a few lines of text either way
            max_tokens = 400 if self.config.data.level in ("char", "symbol") else 50
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        tokens = generate(
            self.model,
            self.vocab,
            self.codec,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            generator,
            stop_at_eos,
        )
        return self.codec.join((self.codec.prompt_tokens(prompt) if with_prompt else []) + tokens)

    def score(self, lines: Sequence[str]) -> list[dict[str, Any]]:
        """Per line: ``logprob`` (nats), ``ppl``, each token's ``surprisal_bits``, the ``tokens``
        as read (``<unk>`` where a word is unknown), ``oov`` and ``unknown``. See :func:`score_lines`."""
        return score_lines(self.model, self.vocab, self.codec, list(lines))

    def next(self, prefix: str = "", k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most probable next tokens after ``prefix``, with their probabilities."""
        return next_distribution(self.model, self.vocab, self.codec, prefix, k)

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of ``text`` (read as a prompt) not in the vocabulary, sorted."""
        return sorted({t for t in self.codec.prompt_tokens(text) if t not in self.vocab})

    def evaluate(self, split: str = "test", data: str | Path | None = None) -> dict[str, float]:
        """Perplexity and bits on ``split`` of ``data`` (default: the run's recorded corpus), a
        file per split streamed in constant memory; a single file's validation part is the
        fraction the run held out (it has no test split)."""
        if data is None:
            recorded = recorded_data(self.run_dir)
        else:
            recorded = {"data": str(data), "train": None, "valid": None, "test": None}
        d, t = self.config.data, self.config.train
        files = locate(
            recorded["data"], recorded["train"], recorded["valid"], recorded["test"], d.valid_fraction
        )
        batch, bptt, device = t.eval_batch_size, t.bptt, self.device
        if files.valid_fraction is None:
            path = getattr(files, split)
            if path is None:
                hint = "; try --split valid" if split == "test" and files.valid is not None else ""
                raise RnnkitError(f"{recorded['data'] or files.train}: the corpus has no {split} split{hint}")
            return evaluate_file(self.model, path, self.codec, self.vocab, batch, bptt, device)
        if split == "test":
            raise RnnkitError(
                f"{files.train}: a single file is split into train and valid only, so it has no test "
                f"split; try --split valid (its last {files.valid_fraction:.0%}), or give a test file"
            )
        tokens = heldout_tokens(files.train, files.valid_fraction, self.codec)
        return evaluate_tokens(self.model, tokens, self.codec, self.vocab, batch, bptt, device, files.train)

    def report(self, split: str = "test", data: str | Path | None = None) -> dict[str, Any]:
        raise RnnkitError(
            f"{self.run_dir}: a language model; --report and --confusion are for taggers and classifiers"
        )


def _words(sentence: str | Sequence[str]) -> list[str]:
    """A sentence as words: a string is split on whitespace, a list of words kept."""
    return sentence.split() if isinstance(sentence, str) else list(sentence)


class TaggerRun(Trained):
    """A trained tagger: :meth:`tag`."""

    task: Tagging

    def __init__(
        self, task: Tagging, config: RunConfig, run_dir: Path, which: str, device: torch.device
    ) -> None:
        super().__init__(task, config, run_dir, which, device)
        self.vocab = task.corpus.words
        self.tags: Vocab = task.corpus.tags
        """The tags the model predicts (BIOES inside for entity tags; :meth:`tag` writes the file's IOB1)."""

    def tag(self, sentences: Sequence[str | Sequence[str] | Sentence]) -> list[list[str]]:
        """The predicted tag of every word of each sentence (a string split on whitespace, a
        list of words, or a :class:`rnnkit.data.conll.Sentence`), in the corpus's scheme."""
        read = [
            Sentence(s.words, None, s.source, s.line) if isinstance(s, Sentence) else Sentence(_words(s))
            for s in sentences
        ]
        for n, s in enumerate(read):
            if not s.words:
                raise RnnkitError(f"sentence {n + 1} has no words to tag")
        return self.task.predict(read)[0] if read else []


class ClassifierRun(Trained):
    """A trained sentence classifier: :meth:`classify`."""

    task: Classification

    def __init__(
        self, task: Classification, config: RunConfig, run_dir: Path, which: str, device: torch.device
    ) -> None:
        super().__init__(task, config, run_dir, which, device)
        self.vocab = task.corpus.words
        self.classes: list[str] = task.class_names
        """The classes' names, by class number."""

    def classify(self, sentences: Sequence[str | Sequence[str]]) -> list[dict[str, Any]]:
        """Per sentence (a string split on whitespace, or a list of words): its ``class``
        (number), that class's ``name`` and every class's probability (``probs``, by class
        number)."""
        words = [_words(s) for s in sentences]
        for n, w in enumerate(words):
            if not w:
                raise RnnkitError(f"sentence {n + 1} has no words to classify")
        if not words:
            return []
        out = []
        for p in self.task.log_probs(words).exp().tolist():
            best = max(range(len(p)), key=p.__getitem__)
            out.append({"class": best, "name": self.classes[best], "probs": p})
        return out


_KINDS: dict[type[Any], type[Trained]] = {
    LanguageModelling: LanguageModelRun,
    Tagging: TaggerRun,
    Classification: ClassifierRun,
}
"""What a task's trained run offers beyond :class:`Trained` (a new task without an entry gets
evaluate, report and its model)."""


def warn_unknown(vocab: Vocab, tokens: list[str], program: str = "rnnkit") -> None:
    """Warn on standard error that ``tokens`` not in the vocabulary are read as ``<unk>``."""
    unknown = sorted({t for t in tokens if t not in vocab})
    if unknown and vocab.unk is not None:
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        print(
            f"{program}: warning: not in the vocabulary, read as {vocab.unk}: {' '.join(unknown[:10])}{more}",
            file=sys.stderr,
        )


# -- a language model's inference on (model, vocabulary, codec) ------------------------------------


def _context(vocab: Vocab, codec: Codec, tokens: list[str]) -> list[int]:
    """Ids of ``tokens`` conditioned like a fresh line: after the previous sentence's end."""
    start = codec.sentence_end
    ids = ([vocab.index(start)] if start in vocab else []) + [vocab.index(t) for t in tokens]
    if not ids:
        raise RnnkitError("the prompt is empty and the vocabulary has no sentence start")
    return ids


def as_read(vocab: Vocab, tokens: list[str]) -> tuple[list[str], list[str]]:
    """``tokens`` as the model reads them (each unknown one replaced by ``<unk>``) and the
    unknown ones, in order."""
    if vocab.unk is None:
        return tokens, []
    unknown = [t for t in tokens if t not in vocab]
    return ([t if t in vocab else vocab.unk for t in tokens] if unknown else tokens), unknown


def _scored(tokens: list[str], unknown: list[str], logp: torch.Tensor | None) -> dict[str, Any]:
    """One line's figures: the tokens read (``<unk>`` where a word was unknown), their
    surprisal in bits, log P (nats), perplexity, and the out-of-vocabulary words."""
    if logp is None or logp.numel() == 0:
        tokens, logp = tokens[:0], torch.zeros(0, dtype=torch.float64)
    total = logp.sum().item()
    return {
        "tokens": tokens[len(tokens) - logp.numel() :],
        "surprisal_bits": (-logp / math.log(2)).tolist(),
        "logprob": total,
        "ppl": math.exp(-total / logp.numel()) if logp.numel() else 1.0,
        "oov": len(unknown),
        "unknown": unknown,
    }


@torch.no_grad()
def score_line(model: LanguageModel, vocab: Vocab, codec: Codec, line: str) -> dict[str, Any]:
    """log P(line) under the model, conditioned on a sentence start, one token at a time.

    Returns the tokens as the model read them, their surprisal -log2 P (bits), the total
    log-probability (nats), the line's perplexity, and ``oov``/``unknown``: how many and
    which tokens are not in the vocabulary. Those are read and scored as ``<unk>`` (the
    probability of *some* rare word, not of that word), and ``tokens`` shows ``<unk>``.
    """
    tokens, unknown = as_read(vocab, codec.corpus_tokens(line + "\n"))  # the line, its sentence end
    ids = torch.tensor(_context(vocab, codec, tokens))
    if ids.numel() < 2:
        return _scored(tokens, unknown, None)
    device = next(model.parameters()).device
    ids = ids.to(device)
    logp, _ = model.log_prob(ids[:-1, None], ids[1:, None])
    return _scored(tokens, unknown, logp[:, 0].double().cpu())


@torch.no_grad()
def score_lines(model: LanguageModel, vocab: Vocab, codec: Codec, lines: list[str]) -> list[dict[str, Any]]:
    """:func:`score_line` of every line, computed as one padded batch (lines of similar
    length together): the same figures to float rounding, many times faster."""
    read = [as_read(vocab, codec.corpus_tokens(line + "\n")) for line in lines]
    tokens, unknown = [r[0] for r in read], [r[1] for r in read]
    ids = [_context(vocab, codec, t) for t in tokens]
    order = sorted(range(len(lines)), key=lambda i: len(ids[i]))
    results: list[dict[str, Any]] = [{}] * len(lines)
    device = next(model.parameters()).device
    longest = max((len(i) for i in ids), default=0)
    if longest >= 2:
        batch = torch.zeros(longest, len(lines), dtype=torch.long)
        for column, i in enumerate(order):
            batch[: len(ids[i]), column] = torch.tensor(ids[i])
        batch = batch.to(device)
        h, _ = model(batch[:-1])  # padding comes after each line: it never leaks back
        counts = torch.tensor([len(ids[i]) - 1 for i in order], device=device).clamp(min=0)
        real = torch.arange(longest - 1, device=device)[None, :] < counts[:, None]  # (N, L)
        # the output layer on real positions only, one line after another
        logp = model.head.log_prob(h.transpose(0, 1)[real], batch[1:].T[real]).double().cpu()
        ends = counts.cumsum(0).tolist()
    for column, i in enumerate(order):
        n = len(ids[i]) - 1
        line_logp = logp[ends[column] - n : ends[column]] if n >= 1 else None
        results[i] = _scored(tokens[i], unknown[i], line_logp)
    return results


@torch.no_grad()
def next_distribution(
    model: LanguageModel, vocab: Vocab, codec: Codec, prefix: str, k: int = 10
) -> list[tuple[str, float]]:
    """The ``k`` most probable next tokens after ``prefix`` with their probabilities."""
    ids = torch.tensor(_context(vocab, codec, codec.prompt_tokens(prefix)))
    device = next(model.parameters()).device
    h, _ = model(ids[:, None].to(device))
    probs = model.head.log_probs(h[-1]).exp()[0]
    top = probs.topk(min(k, probs.numel()))
    return [(vocab.tokens[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


@torch.no_grad()
def generate(
    model: LanguageModel,
    vocab: Vocab,
    codec: Codec,
    prompt: str = "",
    max_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
) -> list[str]:
    """Sample a continuation of ``prompt``: softmax(logits / temperature), optionally cut to
    the ``top_k`` tokens or the smallest set of probability ``top_p`` (nucleus sampling).

    With ``stop_at_eos`` it stops where :meth:`Codec.ends_text` says the text ends (the end
    of the sentence; for characters, a blank line), else after ``max_tokens``."""
    if temperature <= 0:
        raise RnnkitError(f"temperature must be positive, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise RnnkitError(f"top_p must be in (0, 1], got {top_p}")
    prompt_tokens = codec.prompt_tokens(prompt)
    ids = _context(vocab, codec, prompt_tokens)
    device = next(model.parameters()).device
    h, state = model(torch.tensor(ids, device=device)[:, None])
    out: list[str] = []
    previous = prompt_tokens[-1] if prompt_tokens else None
    for _ in range(max_tokens):
        logits = model.head.log_probs(h[-1])[0] / temperature
        if top_k is not None:
            cut = logits.topk(min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < cut, -math.inf)
        if top_p is not None:
            sorted_logits, order = logits.sort(descending=True)
            keep = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1) < top_p
            logits = torch.full_like(logits, -math.inf).scatter(0, order[keep], sorted_logits[keep])
        next_id = int(torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator))
        token = vocab.tokens[next_id]
        if stop_at_eos and codec.ends_text(previous, token):
            if out and codec.ends_sentence(out[-1]):  # a char passage's blank line: keep no newline
                out.pop()
            break
        out.append(token)
        previous = token
        h, state = model(torch.tensor([[next_id]], device=device), state)
    return out
