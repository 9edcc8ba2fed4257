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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rnnkit.config import RunConfig
from rnnkit.data.conll import Sentence
from rnnkit.data.corpora import locate
from rnnkit.data.lines import LINE_LIMIT, split_text
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks import Task, task_kind
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.lm import LanguageModelling, evaluate_file, evaluate_tokens, heldout_tokens
from rnnkit.tasks.tagging import Tagging
from rnnkit.textsafe import printable
from rnnkit.training.run import read_config, recorded_data
from rnnkit.training.rundir import RunDir

if TYPE_CHECKING:
    from rnnkit.stream import Stream

SCORE_WINDOW = 1024
"""A line of more tokens is scored this many at a time, the state carried from one window to
the next: the figures of the line in one piece, in memory bounded by the window."""

BATCH_TOKENS = 1 << 15
"""Short lines are scored together in batches of at most this many (padded) positions."""

HEAD_VALUES = 1 << 24
"""The output layer is given groups of positions whose log-probabilities over the whole
vocabulary hold at most this many numbers (64 MiB in fp32), whatever the batch."""

LISTED_TOKENS = 10_000
"""A scored line of more tokens leaves its per-token figures out (``tokens``,
``surprisal_bits``) and says so (``per_token_left_out``); ``token_count`` is always there."""

LISTED_UNKNOWN = 100
"""Distinct out-of-vocabulary words listed per line (``unknown``); ``oov`` counts every one."""


def load(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Trained:
    """The trained run in ``run_dir``, whatever its task, its model in eval mode on ``device``.

    ``which`` is the checkpoint: ``best`` (by validation) or ``last``. A run that has no
    ``best`` yet (killed in its first epoch, after a timed save of ``last``) is loaded from
    ``last``, with a note on standard error. Works for a run trained on a GPU and loaded on a
    CPU: weights are plain tensors.
    """
    files = RunDir(run_dir)
    files.checkpoint(which)  # "best" or "last", else a one-line error
    if which == "best" and not files.record("best").exists() and files.record("last").exists():
        which = "last"
        print(
            f"rnnkit: note: {run_dir} has no best checkpoint yet (no validation finished); "
            "using last/, its latest resumable save",
            file=sys.stderr,
        )
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

    def stream(self, *args: Any, **kwargs: Any) -> Stream:
        raise self._refuse("stream", "a language model (task 'lm')")

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
        stop: str | Sequence[str] | None = None,
        no_unk: bool = False,
    ) -> str:
        """A sampled continuation of ``prompt`` as text (after the prompt with ``with_prompt``).

        ``max_tokens`` defaults to 400 for character and symbol models, else 50; ``seed``
        (or a ``generator``, drawn on across calls) makes it repeat; ``stop`` (a token, or
        several) ends the sample after that token; ``no_unk`` never samples ``<unk>``. See
        :func:`generate`.
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
            stop,
            no_unk,
        )
        return self.codec.join((self.codec.prompt_tokens(prompt) if with_prompt else []) + tokens)

    def score(self, lines: Sequence[str], window: int | None = None) -> list[dict[str, Any]]:
        """Per line: ``logprob`` (nats), ``ppl``, each token's ``surprisal_bits``, the ``tokens``
        as read (``<unk>`` where a word is unknown), ``token_count``, ``oov`` and ``unknown``
        (distinct, the first 100). A line longer than ``window`` tokens is scored in windows,
        the state carried: the same figures. See :func:`score_lines`."""
        return score_lines(self.model, self.vocab, self.codec, list(lines), window)

    def line_score(self, window: int | None = None) -> LineScore:
        """A :class:`LineScore` to score one line given in parts (a line read in pieces)."""
        return LineScore(self.model, self.vocab, self.codec, window)

    def stream(
        self, restore: bytes | None = None, limit: int = LINE_LIMIT, window: int = SCORE_WINDOW
    ) -> Stream:
        """A :class:`rnnkit.stream.Stream` reading text (or tokens) as it comes, the state
        carried: ``feed``, ``next``, ``snapshot``; from the state of ``restore`` (what a
        stream of this model's ``snapshot()`` returned), else from a fresh line."""
        from rnnkit.stream import Stream  # it builds on this module's scoring

        stream = Stream(self.model, self.vocab, self.codec, limit=limit, window=window)
        if restore is not None:
            stream.restore(restore)
        return stream

    def next(self, prefix: str = "", k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most probable next tokens after ``prefix``, with their probabilities."""
        return next_distribution(self.model, self.vocab, self.codec, prefix, k)

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of ``text`` (read as a prompt) not in the vocabulary, sorted."""
        return sorted({t for t in self.codec.prompt_tokens(text) if t not in self.vocab})

    def evaluate(
        self,
        split: str = "test",
        data: str | Path | None = None,
        adapt: str | None = None,
        progress: bool = False,
        **settings: Any,
    ) -> dict[str, Any]:
        """Perplexity and bits on ``split`` of ``data`` (default: the run's recorded corpus), a
        file per split streamed in constant memory; a single file's validation part is the
        fraction the run held out (it has no test split).

        With ``adapt`` (``"dynamic"``, ``"cache"`` or ``"dynamic,cache"``) the split is read as
        one stream that the model adapts to as it goes, each token scored before anything is
        learnt from it (:mod:`rnnkit.adapt`): the settings are the run's tuned ones
        (:meth:`tune_adapt`) or else the papers', each overridden by ``settings`` (``lr``,
        ``decay``, ``segment``, ``eps``, ``stats_tokens``, ``stats_batch``, ``window``,
        ``theta``, ``cache_lambda``). The figures then also hold ``model_ppl`` (the model's
        own, before the cache's mixing) and ``adapt`` (the settings, where they came from,
        tokens/s). The run's weights are left as trained. Example::

            run = rnnkit.load("runs/ptb")
            plain = run.evaluate("test")["ppl"]
            adapted = run.evaluate("test", adapt="dynamic,cache")["ppl"]
        """
        if adapt is not None:
            from rnnkit import adapt as adaptation  # the adaptation's code only when asked for

            chosen, source = adaptation.resolve(self.run_dir, adapt, **settings)
            figures = adaptation.evaluate_adapted(self, split, chosen, data, progress)
            figures["adapt"]["source"] = source
            return figures
        if settings:
            raise RnnkitError(f"adaptation settings ({', '.join(sorted(settings))}) need adapt=...")
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

    def tune_adapt(
        self,
        adapt: str = "dynamic,cache",
        budget_tokens: int = 20_000,
        budget_minutes: float = 10.0,
        data: str | Path | None = None,
        progress: bool = False,
        log: Callable[[str], None] | None = None,
        segment: int | None = None,
        stats_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Search the settings of ``adapt`` on the validation split only (its first
        ``budget_tokens`` per trial, trials stopped after ``budget_minutes``) and store them
        in the run's ``adapt.json`` (written atomically), which :meth:`evaluate` then uses.
        Dynamic evaluation's ``segment`` and ``stats_tokens`` (default: the papers') stay
        fixed through the search and are stored with its choice. Returns what was stored:
        the settings and the search's cost. See :func:`rnnkit.adapt.tune`."""
        from rnnkit import adapt as adaptation

        fixed = {k: v for k, v in (("segment", segment), ("stats_tokens", stats_tokens)) if v is not None}
        dynamic = adaptation.DynamicSettings(**fixed) if fixed else None
        return adaptation.tune(self, adapt, budget_tokens, budget_minutes * 60, data, progress, log, dynamic)

    def adapted_scorer(self, adapt: str, data: str | Path | None = None, **settings: Any) -> Any:
        """A :class:`rnnkit.adapt.LineScorer`: lines scored in order as one stream that the
        model adapts to (a line's figures then depend on the lines before it)."""
        from rnnkit import adapt as adaptation

        chosen, source = adaptation.resolve(self.run_dir, adapt, **settings)
        return adaptation.LineScorer(self, chosen, data, source)


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

    def tag(
        self, sentences: Sequence[str | Sequence[str] | Sentence], max_words: int | None = None
    ) -> list[list[str]]:
        """The predicted tag of every word of each sentence (a string split on whitespace, a
        list of words, or a :class:`rnnkit.data.conll.Sentence`), in the corpus's scheme; a
        sentence of more than ``max_words`` words (default
        :data:`rnnkit.tasks.tagging.MAX_WORDS`) is tagged in parts of that many."""
        read = [
            Sentence(s.words, None, s.source, s.line) if isinstance(s, Sentence) else Sentence(_words(s))
            for s in sentences
        ]
        for n, s in enumerate(read):
            if not s.words:
                raise RnnkitError(f"sentence {n + 1} has no words to tag")
        return self.task.predict(read, max_words)[0] if read else []


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

    def classify(
        self, sentences: Sequence[str | Sequence[str]], max_words: int | None = None
    ) -> list[dict[str, Any]]:
        """Per sentence (a string split on whitespace, or a list of words): its ``class``
        (number), that class's ``name`` and every class's probability (``probs``, by class
        number). A sentence of more than ``max_words`` words (default
        :data:`rnnkit.tasks.classification.MAX_WORDS`) is classified on its first ``max_words``."""
        words = [_words(s) for s in sentences]
        for n, w in enumerate(words):
            if not w:
                raise RnnkitError(f"sentence {n + 1} has no words to classify")
        if not words:
            return []
        out = []
        for p in self.task.log_probs(words, max_words).exp().tolist():
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
        shown = " ".join(printable(word) for word in unknown[:10])
        print(
            f"{program}: warning: not in the vocabulary, read as {vocab.unk}: {shown}{more}", file=sys.stderr
        )


# -- a language model's inference on (model, vocabulary, codec) ------------------------------------


def context_ids(vocab: Vocab, codec: Codec, tokens: list[str]) -> list[int]:
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


class LineScore:
    """log P of one line whose tokens come in parts (a line read in pieces), scored
    :data:`SCORE_WINDOW` tokens at a time with the recurrent state carried across windows,
    conditioned on a sentence start: the figures :func:`score_line` gives the whole line,
    holding at most a window (and a piece) of it.

    :meth:`add` the line's tokens, part after part (the last part with the line's end, see
    :meth:`rnnkit.data.text.Codec.piece_tokens`), then :meth:`result`.
    """

    def __init__(
        self,
        model: LanguageModel,
        vocab: Vocab,
        codec: Codec,
        window: int | None = None,
        keep_features: bool = False,
    ) -> None:
        window = SCORE_WINDOW if window is None else window
        if window < 1:
            raise RnnkitError(f"the scoring window must be at least 1 token, got {window}")
        self.model, self.vocab, self.window = model, vocab, window
        self.device = next(model.parameters()).device
        start = codec.sentence_end
        self.context = start in vocab  # the first token is predicted from the sentence start
        self.pending: list[int] = [vocab.index(start)] if self.context else []
        self.state: Any = None
        self.total, self.count, self.oov = 0.0, 0, 0
        self.unknown: dict[str, None] = {}  # distinct, in the order first seen
        self.unknown_left_out = False
        self.tokens: list[str] | None = []  # as read, while the line has at most LISTED_TOKENS
        self.bits: list[float] | None = []
        self.features: list[torch.Tensor] | None = [] if keep_features else None
        """With ``keep_features``: the output layer's input (M, H) of every window scored, and,
        once :meth:`result` has run, of the position after the last token (:meth:`next_features`)."""

    def add(self, tokens: list[str]) -> None:
        """Read the next ``tokens`` of the line, scoring every full window."""
        read, unknown = as_read(self.vocab, tokens)
        self.oov += len(unknown)
        for word in unknown:
            if word not in self.unknown:
                if len(self.unknown) < LISTED_UNKNOWN:
                    self.unknown[word] = None
                else:
                    self.unknown_left_out = True
        self.count += len(read)
        if self.tokens is not None:
            if self.count - (0 if self.context else 1) > LISTED_TOKENS:
                self.tokens = self.bits = None
            else:
                self.tokens += read
        self.pending += [self.vocab.index(t) for t in read]
        at = 0
        while len(self.pending) - at > self.window:
            self._score(at, self.window)
            at += self.window
        del self.pending[:at]

    @torch.no_grad()  # the state carried from window to window must not carry a graph
    def _score(self, at: int, n: int) -> None:
        """Score the ``n`` tokens after ``pending[at]``, carrying the state on."""
        ids = torch.tensor(self.pending[at : at + n + 1], device=self.device)
        h, self.state = self.model(ids[:-1, None], self.state)
        if self.features is not None:
            self.features.append(h[:, 0])
        logp = _head_log_prob(self.model, len(self.vocab), h[:, 0], ids[1:])
        self.total += logp.sum().item()
        if self.bits is not None:
            self.bits += (-logp / math.log(2)).tolist()

    @torch.no_grad()
    def next_features(self) -> torch.Tensor:
        """With ``keep_features``, after :meth:`result`: the output layer's input (P, H) at every
        position scored and the one after the last token (what predicts the token after the
        line), one pass for both (the top-k next tokens of ``rnnkit explore``)."""
        assert self.features is not None, "made with keep_features=True"
        ids = torch.tensor(self.pending[-1:], device=self.device)
        h, _ = self.model(ids[:, None], self.state)
        return torch.cat([*self.features, h[:, 0]])

    def result(self) -> dict[str, Any]:
        """The line's figures (see :func:`score_line`), once all its tokens are added."""
        if len(self.pending) >= 2:
            self._score(0, len(self.pending) - 1)
        self.pending = self.pending[-1:]
        predicted = max(self.count - (0 if self.context else 1), 0)
        out: dict[str, Any] = {}
        if self.tokens is not None and self.bits is not None:
            out["tokens"] = self.tokens[len(self.tokens) - predicted :] if predicted else []
            out["surprisal_bits"] = self.bits
        listed = self.tokens is not None
        return out | line_figures(
            self.total, predicted, self.oov, self.unknown, listed, self.unknown_left_out
        )


def line_figures(
    total: float, count: int, oov: int, unknown: Any, listed: bool, unknown_left_out: bool
) -> dict[str, Any]:
    """The figures every scored line reports besides its tokens (``rnnkit score``'s JSON keys):
    log P, perplexity, out-of-vocabulary count and words, tokens predicted, and whether the
    per-token lists or the unknown words were cut."""
    out: dict[str, Any] = {
        "logprob": total,
        "ppl": _perplexity(total, count),
        "oov": oov,
        "unknown": list(unknown),
        "token_count": count,
    }
    if not listed:
        out["per_token_left_out"] = True
    if unknown_left_out:
        out["unknown_left_out"] = True
    return out


def _perplexity(logprob: float, tokens: int) -> float:
    """exp(-logprob / tokens): 1 for no token, inf past what a float holds."""
    mean = -logprob / tokens if tokens else 0.0
    return math.exp(mean) if mean < 700 else math.inf


def _head_log_prob(
    model: LanguageModel, vocab_size: int, h: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """log P(targets | h) of (M, H) features, as float64 on the CPU, the output layer given
    a group of positions at a time (:data:`HEAD_VALUES`)."""
    rows = max(1, HEAD_VALUES // max(vocab_size, 1))
    parts = [model.head.log_prob(h[i : i + rows], targets[i : i + rows]) for i in range(0, h.shape[0], rows)]
    return torch.cat(parts).double().cpu() if parts else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def score_line(
    model: LanguageModel, vocab: Vocab, codec: Codec, line: str, window: int | None = None
) -> dict[str, Any]:
    """log P(line) under the model, conditioned on a sentence start, one token at a time.

    Returns the tokens as the model read them, their surprisal -log2 P (bits), the total
    log-probability (nats), the line's perplexity, and ``oov``/``unknown``: how many tokens
    and which distinct words (the first :data:`LISTED_UNKNOWN`) are not in the vocabulary.
    Those are read and scored as ``<unk>`` (the probability of *some* rare word, not of that
    word), and ``tokens`` shows ``<unk>``. ``token_count`` is how many tokens were scored;
    a line of more than :data:`LISTED_TOKENS` leaves ``tokens`` and ``surprisal_bits`` out
    (``per_token_left_out``). A long line is scored in windows of ``window`` tokens, the
    state carried (:class:`LineScore`); ``line`` should hold no newline.
    """
    return score_lines(model, vocab, codec, [line], window)[0]


@torch.no_grad()
def score_lines(
    model: LanguageModel, vocab: Vocab, codec: Codec, lines: Sequence[str], window: int | None = None
) -> list[dict[str, Any]]:
    """:func:`score_line` of every line: short lines (``window`` tokens at most) scored as
    padded batches of lines of similar length, :data:`BATCH_TOKENS` positions at most; a
    longer line alone, in windows with the state carried (a line of more than
    :data:`rnnkit.data.lines.LINE_LIMIT` characters also tokenized a piece at a time). The
    same figures to float rounding, in memory bounded whatever the lines."""
    window = SCORE_WINDOW if window is None else window
    results: list[dict[str, Any]] = [{} for _ in lines]
    short: list[tuple[int, list[str], list[str], list[int]]] = []  # (index, tokens, unknown, ids)
    for i, line in enumerate(lines):
        if len(line) > LINE_LIMIT:
            scorer = LineScore(model, vocab, codec, window)
            pieces = list(split_text(line, LINE_LIMIT))
            for n, piece in enumerate(pieces, 1):
                scorer.add(codec.piece_tokens(piece, "\n" if n == len(pieces) else None))
            results[i] = scorer.result()
            continue
        raw = codec.corpus_tokens(line + "\n")  # the line, its sentence end
        if len(raw) > min(window, LISTED_TOKENS):
            scorer = LineScore(model, vocab, codec, window)
            scorer.add(raw)
            results[i] = scorer.result()
            continue
        tokens, unknown = as_read(vocab, raw)
        short.append((i, tokens, unknown, context_ids(vocab, codec, tokens)))
    short.sort(key=lambda s: len(s[3]))
    group: list[tuple[int, list[str], list[str], list[int]]] = []
    for item in short:
        if group and (len(group) + 1) * len(item[3]) > BATCH_TOKENS:
            _score_batch(model, vocab, group, results)
            group = []
        group.append(item)
    if group:
        _score_batch(model, vocab, group, results)
    return results


def _score_batch(
    model: LanguageModel,
    vocab: Vocab,
    group: list[tuple[int, list[str], list[str], list[int]]],
    results: list[dict[str, Any]],
) -> None:
    """Score short lines (shortest first) as one padded batch, into ``results``."""
    device = next(model.parameters()).device
    longest = len(group[-1][3])
    logp = torch.zeros(0, dtype=torch.float64)
    if longest >= 2:
        batch = torch.zeros(longest, len(group), dtype=torch.long)
        for column, (_, _, _, ids) in enumerate(group):
            batch[: len(ids), column] = torch.tensor(ids)
        batch = batch.to(device)
        h, _ = model(batch[:-1])  # padding comes after each line: it never leaks back
        counts = torch.tensor([len(ids) - 1 for *_, ids in group], device=device).clamp(min=0)
        real = torch.arange(longest - 1, device=device)[None, :] < counts[:, None]  # (N, L)
        # the output layer on real positions only, one line after another
        logp = _head_log_prob(model, len(vocab), h.transpose(0, 1)[real], batch[1:].T[real])
    values = logp.tolist()  # one conversion for the batch: per-line tensor calls cost more than the model
    end = 0
    for i, tokens, unknown, ids in group:
        n = max(len(ids) - 1, 0)
        results[i] = _scored(tokens, unknown, values[end : end + n])
        end += n


def _scored(tokens: list[str], unknown: list[str], logp: list[float]) -> dict[str, Any]:
    """One short line's figures (see :func:`score_line`) from its tokens' log-probabilities."""
    total = math.fsum(logp)
    distinct = list(dict.fromkeys(unknown))
    out = {
        "tokens": tokens[len(tokens) - len(logp) :] if logp else [],
        "surprisal_bits": [-x / math.log(2) for x in logp],
        "logprob": total,
        "ppl": _perplexity(total, len(logp)),
        "oov": len(unknown),
        "unknown": distinct[:LISTED_UNKNOWN],
        "token_count": len(logp),
    }
    if len(distinct) > LISTED_UNKNOWN:
        out["unknown_left_out"] = True
    return out


@torch.no_grad()
def next_distribution(
    model: LanguageModel, vocab: Vocab, codec: Codec, prefix: str, k: int = 10
) -> list[tuple[str, float]]:
    """The ``k`` most probable next tokens after ``prefix`` with their probabilities."""
    ids = torch.tensor(context_ids(vocab, codec, codec.prompt_tokens(prefix)))
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
    stop: str | Sequence[str] | None = None,
    no_unk: bool = False,
) -> list[str]:
    """Sample a continuation of ``prompt``: softmax(logits / temperature), optionally cut to
    the ``top_k`` tokens or the smallest set of probability ``top_p`` (nucleus sampling).

    With ``stop_at_eos`` it stops where :meth:`Codec.ends_text` says the text ends (the end
    of the sentence; for characters, a blank line), else after ``max_tokens``. ``stop`` (a
    token or several, e.g. ``[".", "!", "?"]``: a sentence where ``<eos>`` ends a paragraph)
    ends it after the first of them drawn, which is kept. With ``no_unk``, ``<unk>`` is
    never drawn (its probability goes to the other tokens)."""
    if temperature <= 0:
        raise RnnkitError(f"temperature must be positive, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise RnnkitError(f"top_p must be in (0, 1], got {top_p}")
    ends = _stop_rule(stop)
    unk = vocab.index(vocab.unk) if no_unk and vocab.unk is not None and vocab.unk in vocab else None
    prompt_tokens = codec.prompt_tokens(prompt)
    ids = context_ids(vocab, codec, prompt_tokens)
    device = next(model.parameters()).device
    h, state = model(torch.tensor(ids, device=device)[:, None])
    out: list[str] = []
    previous = prompt_tokens[-1] if prompt_tokens else None
    for _ in range(max_tokens):
        logits = model.head.log_probs(h[-1])[0] / temperature
        if unk is not None:
            logits[unk] = -math.inf
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
        if ends(token):
            break
        previous = token
        h, state = model(torch.tensor([[next_id]], device=device), state)
    return out


def _stop_rule(stop: str | Sequence[str] | None) -> Callable[[str], bool]:
    """Whether a drawn token ends the sample: it is one of the ``stop`` tokens (its
    surrounding spaces aside, as a subword carries them)."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s.strip() for s in stops):
        raise RnnkitError("--stop must be a token such as '.', got an empty one")
    wanted = {s.strip() for s in stops}
    return lambda token: token.strip() in wanted
