"""Typed run configuration: defaults -> TOML file or preset -> ``--section.field=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit import names, presets
from rnnkit.errors import RnnkitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


INT32_MAX = 2**31 - 1
"""The largest value a C int takes (torch's thread count, numpy's seed is below 2**32)."""

MAX_RECURRENT_PARAMETERS = 2**31
"""A generous ceiling on the recurrent layers' parameters (8 GiB as fp32, before gradients and
optimizer state): a model above it is refused by :func:`load_config` with the number it would need."""


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: ``low``..``high`` (``None``: unbounded), each end
    closed unless ``*_open``; ``also`` values allowed besides (``loss_spike`` 0: off); a float is
    finite unless ``high`` is ``math.inf`` and the end is closed (``clip_norm = inf``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()

    def __contains__(self, value: object) -> bool:
        if value in self.also:
            return True
        if isinstance(value, float) and math.isnan(value):
            return False
        if isinstance(value, float) and math.isinf(value) and not (value == self.high and not self.high_open):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        """``at least 1``, ``above 0``, ``in [0, 1)``, ``above 0 (inf allowed)``, ``0, or above 1``."""
        if self.low is not None and (self.high is None or math.isinf(self.high)):
            text = f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
            text += " (inf allowed)" if self.high is not None and not self.high_open else ""
        elif self.low is None:
            text = f"{'below' if self.high_open else 'at most'} {_number(self.high)}"
        else:
            text = f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
            text += ")" if self.high_open else "]"
        return ", or ".join([*map(_number, self.also), text])


def _number(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else str(value)


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    choices: tuple = (),
    factory=None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    also: tuple = (),
) -> Any:
    """A config field with its one-line ``doc`` and, for a choice, its allowed values; for a
    number, its :class:`Range` (``low``, ``high``, open or closed ends, ``also`` allowed values).

    The one source of what ``rnnkit config`` prints and of the checks of :func:`load_config`.
    """
    bounds = None
    if low is not None or high is not None or also:
        bounds = Range(low, high, low_open, high_open, also)
    metadata = {"doc": doc, "choices": choices, "range": bounds}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ModelConfig:
    """The network. Cell options apply to the cells that take them (see ``rnnkit.rnn``).

    Dropout: ``dropout`` on the RNN's output, and on the word vectors and between layers
    unless ``input_dropout`` / ``layer_dropout`` say otherwise; ``embedding_dropout``
    drops whole words, ``weight_drop`` entries of each W_hh, ``locked_dropout`` shares
    masks over time (the AWD-LSTM regularisers).
    """

    cell: str = setting("lstm", "the recurrent cell of every layer", choices=names.CELLS)
    embed_size: int = setting(200, "size of the word (or character) vectors the first layer reads", low=1)
    hidden_size: int = setting(200, "size of h_t, in each direction of each layer", low=1)
    num_layers: int = setting(2, "recurrent layers stacked", low=1)
    bidirectional: bool = setting(False, "every layer reads both ways; its output is [h_forward; h_backward]")
    dropout: float = setting(
        0.0,
        "dropout on the RNN's output, and on the inputs and between layers unless set below",
        low=0,
        high=1,
        high_open=True,
    )
    input_dropout: float | None = setting(
        None, "dropout on the word vectors (none: model.dropout)", low=0, high=1, high_open=True
    )
    layer_dropout: float | None = setting(
        None, "dropout between stacked layers (none: model.dropout)", low=0, high=1, high_open=True
    )
    embedding_dropout: float = setting(
        0.0, "probability of dropping a whole word type at each step", low=0, high=1, high_open=True
    )
    weight_drop: float = setting(
        0.0, "DropConnect probability on the entries of every W_hh (AWD-LSTM)", low=0, high=1, high_open=True
    )
    locked_dropout: bool = setting(False, "one dropout mask per sequence, the same at every step")
    projection_size: int | None = setting(
        None, "language models: map the last layer's output to this size before the softmax", low=1
    )
    bias: bool = setting(True, "the cells have biases (false: none, as on the slide)")
    nonlinearity: str = setting(
        "tanh", "elman: f in h_t = f(W_hh h_(t-1) + W_hx x_t)", choices=names.NONLINEARITIES
    )
    reset_after: bool = setting(
        True, "gru: r_t applied after the matrix product (torch, cuDNN); false: Cho et al. 2014"
    )
    forget_bias: float | None = setting(None, "lstm: the forget gate's initial bias (none: torch's init)")
    candidate: str = setting(
        "g",
        "mingru, minlstm: the candidate, g(W x + b) (Feng et al. 2024) or W x + b",
        choices=names.CANDIDATES,
    )
    forget: str = setting(
        "sigmoid",
        "slstm: the forget gate, sigmoid(f~) or exp(f~) (Beck et al. 2024)",
        choices=names.FORGET_GATES,
    )
    scale: float = setting(1.0, "irnn: W_hh starts as scale x the identity (Le et al. 2015)")
    input_std: float = setting(0.001, "irnn: standard deviation of W_hx's initial values", low=0)
    learn_initial_state: bool = setting(False, "learn h_0 instead of starting from zeros")
    init_range: float | None = setting(
        None,
        "language models: every parameter ~ U(-r, r) (Zaremba et al.); none: torch's init",
        low=0,
        low_open=True,
    )
    init: str = setting(
        "torch",
        "language models: torch (each layer's default: word vectors ~ N(0, 1), weights ~ "
        "U(-1/sqrt(H), 1/sqrt(H))) or recipe (the PyTorch word-language-model example's: the same "
        "seed gives its very model: word vectors and W_S ~ U(-0.1, 0.1), the softmax bias 0)",
        choices=("torch", "recipe"),
    )
    embed_init_range: float | None = setting(
        None,
        "language models: the word vectors ~ U(-r, r) (AWD-LSTM); none: torch's init",
        low=0,
        low_open=True,
    )
    tie_weights: bool = setting(
        False, "language models: the softmax's W_S is the embedding matrix (Press & Wolf 2017)"
    )
    head: str = setting(
        "full",
        "language models: the output softmax, full or adaptive (Grave et al. 2017)",
        choices=("full", "adaptive"),
    )
    head_bias: bool = setting(True, "language models: the output softmax has a bias")
    cutoffs: list[int] = setting(  # noqa: RUF009 (a default_factory: each config its own list)
        doc="adaptive head: word-rank bounds of its clusters, increasing (e.g. 2000,5000)",
        factory=list,
        low=1,
    )
    cutoffs_vocab: int | None = setting(
        None,
        "adaptive head: the vocabulary size the cutoffs were set for; another vocabulary scales "
        "them in proportion, with a note (none: the cutoffs as written)",
        low=1,
    )
    div_value: float = setting(4.0, "adaptive head: tail cluster i projects h to hidden / div_value^i", low=1)
    char_embed: int = setting(
        0, "taggers: size of the character vectors of a char BiLSTM feature (0: none)", low=0
    )
    char_hidden: int = setting(50, "taggers: hidden size of the char BiLSTM, each direction", low=1)
    crf: bool = setting(False, "taggers: a linear-chain CRF over the tags instead of a softmax per token")
    pooling: str = setting(
        "final", "classifiers: how a sentence's states become one vector", choices=names.POOLINGS
    )


@dataclass(frozen=True)
class DataConfig:
    """How text becomes token ids (see ``rnnkit.data.corpora``).

    Taggers and classifiers: ``lowercase`` and ``zero_digits`` (every digit read as 0)
    apply to the word-vector lookup only; a tagger's character feature still reads the
    word as written.
    """

    level: str = setting(
        "word",
        "language models: a token is a word, a symbol (PTB-char), a character or a BPE subword",
        choices=names.LEVELS,
    )
    min_freq: int = setting(
        1, "words seen fewer times in training are <unk> (bpe: merges seen fewer times not learned)", low=1
    )
    max_size: int | None = setting(
        None,
        "vocabulary size at most, specials included (none: 300000; bpe: 8192); a cut is warned of",
        low=1,
    )
    valid_fraction: float = setting(
        0.1,
        "a single-file corpus: this last fraction of it is validation",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    column: str = setting("upos", "taggers, CoNLL-U: the tag column learned", choices=("upos", "xpos"))
    classes: int = setting(5, "classifiers, SST: 5 sentiment labels, or 2 (neutral dropped)", choices=(5, 2))
    phrases: bool = setting(False, "classifiers, SST: train on every phrase of the trees, not only sentences")
    lowercase: bool = setting(False, "taggers and classifiers: word vectors looked up lowercased")
    zero_digits: bool = setting(False, "taggers and classifiers: every digit read as 0 for the word lookup")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, truncated BPTT, guards and logging."""

    optimizer: str = setting(
        "sgd",
        "sgd, adam, or ntasgd (SGD, then averaged weights once validation stalls)",
        choices=("sgd", "adam", "ntasgd"),
    )
    lr: float = setting(1.0, "learning rate at the start", low=0, low_open=True)
    momentum: float = setting(0.0, "sgd: momentum", low=0, high=1, high_open=True)
    weight_decay: float = setting(0.0, "L2 penalty on the weights", low=0)
    schedule: str = setting(
        "constant",
        "the rate by epoch: constant, zaremba (x decay after decay_start), plateau (x plateau_factor); "
        "or by step: cosine (half a cosine down to 0 over every epoch's steps, after warmup_steps)",
        choices=("constant", "zaremba", "plateau", "cosine"),
    )
    decay_start: int = setting(4, "zaremba schedule: the last epoch at the full rate", low=0)
    warmup_steps: int = setting(0, "cosine schedule: steps of linear warm-up to train.lr first", low=0)
    decay: float = setting(
        0.5, "zaremba schedule: the rate's factor each epoch after decay_start", low=0, high=1, low_open=True
    )
    plateau_factor: float = setting(
        0.25,
        "plateau schedule: the rate's factor after an epoch that did not improve validation",
        low=0,
        high=1,
        low_open=True,
    )
    epochs: int = setting(13, "passes over the training data", low=1)
    batch_size: int = setting(
        20, "language models: columns of the stream; others: sentences per batch", low=1
    )
    eval_batch_size: int = setting(10, "language models: columns of the stream in validation and test", low=1)
    bptt: int = setting(35, "language models: steps per truncated-BPTT window", low=1)
    variable_bptt: bool = setting(False, "language models: random window lengths around bptt (AWD-LSTM)")
    nonmono: int = setting(
        5, "ntasgd: average once validation is worse than before the last nonmono epochs", low=1
    )
    average_from: int = setting(
        0,
        "average the weights (Polyak) from this epoch's first step on, evaluate and save the "
        "average; 0: no (ntasgd starts by its trigger)",
        low=0,
    )
    clip_norm: float = setting(
        5.0,
        "clip the gradients' global norm to this (inf: measure and log only)",
        low=0,
        high=math.inf,
        low_open=True,
    )
    clip_value: float | None = setting(
        None, "also clip each gradient entry to [-v, v] (none: no)", low=0, low_open=True
    )
    max_bad_steps: int = setting(5, "stop after this many bad (non-finite or spiking) steps in a row", low=1)
    on_nonfinite: str = setting(
        "skip",
        "a bad step: skip it, reduce (undo the update before, rate x nonfinite_factor) or stop",
        choices=("skip", "reduce", "stop"),
    )
    nonfinite_factor: float = setting(
        0.5,
        "on_nonfinite = reduce: the rate's factor per bad step, in (0, 1)",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    loss_spike: float = setting(
        0.0,
        "a loss above this x the recent mean is a bad step (0: off; else > 1)",
        low=1,
        low_open=True,
        also=(0,),
    )
    precision: str = setting(
        "fp32", "fp32, or bf16 autocast of the forward passes (GPUs)", choices=("fp32", "bf16")
    )
    patience: int | None = setting(
        None, "stop after this many epochs without a better validation (none: never)", low=0
    )
    seed: int = setting(0, "random seed: weights, dropout, batch order", low=0, high=2**32 - 1)
    device: str = setting("auto", "auto (a GPU if there is one), cpu, cuda, cuda:1, ...")
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", low=0, high=INT32_MAX)
    log_every: int = setting(100, "log the training loss every this many steps", low=1)
    checkpoint_every: int = setting(
        0, "also save last/ (resumable) every this many steps (0: epoch ends only)", low=0
    )
    checkpoint_minutes: float = setting(
        10.0,
        "also save last/ (resumable) after this many minutes of training since the last save "
        "(0: never by time); a long first epoch killed midway loses minutes, not the epoch",
        low=0,
    )
    eval_every: int = setting(
        0, "also validate every this many steps, keeping the best (0: epoch ends only)", low=0
    )
    backend: str = setting(
        "auto",
        "distributed: auto (nccl on GPUs, gloo on CPUs), gloo or nccl",
        choices=("auto", "gloo", "nccl"),
    )
    dist_timeout: float = setting(
        300.0,
        "distributed: seconds a collective waits before the run fails",
        low=0,
        high=10**9,
        low_open=True,
    )


@dataclass(frozen=True)
class RunConfig:
    """A run's whole configuration: its task and three sections."""

    task: str = setting(
        "lm",
        "what is learned: lm (next word), tag (a tag per token), classify (a label per sentence)",
        choices=names.TASKS,
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def settings() -> list[tuple[str, dataclasses.Field]]:
    """Every setting as ``(dotted name, field)``: ``task``, then each section's fields in order."""
    fields = [("task", next(f for f in dataclasses.fields(RunConfig) if f.name == "task"))]
    return fields + [(f"{s}.{f.name}", f) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


CHOICES = {name: f.metadata.get("choices") for name, f in settings() if f.metadata.get("choices")}
"""The allowed values of each choice setting, from the fields' :func:`setting` metadata."""

RANGES = {name: f.metadata["range"] for name, f in settings() if f.metadata.get("range") is not None}
"""The :class:`Range` of each numeric setting that has one, from the fields' :func:`setting` metadata."""


def describe(config: RunConfig | None = None) -> list[dict]:
    """Every setting of ``config`` (default: the defaults) as ``name, value, default, type,
    choices, range, doc``: what ``rnnkit config`` prints, from the fields alone."""
    config = config or RunConfig()
    hints = {"task": str} | {
        f"{s}.{name}": hint
        for s, cls in SECTIONS.items()
        for name, hint in typing.get_type_hints(cls).items()
    }
    defaults = to_dict(RunConfig())
    values = to_dict(config)
    rows = []
    for name, f in settings():
        section, _, key = name.rpartition(".")
        value, default = (
            (values[section][key], defaults[section][key]) if section else (values[key], defaults[key])
        )
        rows.append(
            {
                "name": name,
                "value": value,
                "default": default,
                "type": _type_name(hints[name]),
                "choices": list(f.metadata.get("choices", ())) or None,
                "range": str(f.metadata["range"]) if f.metadata.get("range") is not None else None,
                "doc": f.metadata.get("doc", ""),
            }
        )
    return rows


def _type_name(hint) -> str:
    """``int``, ``float or none``, ``list of int``: a field's type as the docs write it."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return "list of " + " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    return "none" if hint is type(None) else hint.__name__


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Defaults, updated by the TOML file or preset ``path``, then by ``section.field=value`` strings.

    ``path`` is a file, or a preset's bare name (``zaremba-small``: no ``.toml``, no folder;
    see :mod:`rnnkit.presets`); a file of that name in the working directory wins over the preset.
    """
    raw: dict = {}
    source = "defaults"
    if path is not None:
        source, text = read_config(path)
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise RnnkitError(f"{source}: not valid TOML ({err})") from None
    values: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                values[f"{key}.{sub}"] = (v, source)
        else:
            values[key] = (value, source)
    for item in overrides:
        key, sep, text = item.removeprefix("--").partition("=")
        if not sep:
            raise RnnkitError(f"override {item!r}: expected --section.field=value")
        values[key] = (_parse(key, text), f"override {item!r}")
    return _build(values)


def read_config(path: str | Path) -> tuple[str, str]:
    """``(source, text)`` of the TOML file or preset ``path`` (see :func:`load_config`)."""
    spec = str(path)
    if presets.is_name(spec) and not Path(spec).is_file():  # a file of that name wins; a folder does not
        if spec not in presets.names():
            raise RnnkitError(
                f"{spec}: no such preset or config file; the presets are {', '.join(presets.names())}"
            )
        return f"preset {spec}", presets.read(spec)
    try:
        return spec, Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        stem = Path(spec).name.removesuffix(".toml")
        hint = (
            f"the preset of that name is --config {stem}" if stem in presets.names() else "see rnnkit presets"
        )
        raise RnnkitError(f"{spec}: no such config file ({hint})") from None
    except OSError as err:
        raise RnnkitError(f"{spec}: cannot read the config file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{spec}: not valid TOML ({err})") from None


def _build(values: dict[str, tuple[object, str]]) -> RunConfig:
    hints = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}
    sections: dict[str, dict] = {name: {} for name in SECTIONS}
    top: dict[str, object] = {}
    for key, (value, source) in values.items():
        section, _, name = key.partition(".")
        if section == "task" and not name:
            top["task"] = _check(key, value, str, source)
            continue
        if section not in SECTIONS or name not in hints[section]:
            close = difflib.get_close_matches(key, [name for name, _ in settings()], n=1)
            guess = f" (did you mean {close[0]}?)" if close else ""
            raise RnnkitError(
                f"{source}: unknown setting {key!r}{guess}; 'rnnkit config' lists every setting"
            )
        sections[section][name] = _check(key, value, hints[section][name], source)
    config = RunConfig(**top, **{name: SECTIONS[name](**kw) for name, kw in sections.items()})
    _check_size(config, values)
    return config


def _check(key: str, value: object, hint, source: str) -> object:
    """Check ``value`` against the field's type (ints pass as floats) and its choices."""
    allowed = _types(hint)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        value = float(value)
    if isinstance(value, int) and not isinstance(value, bool) and list in allowed:
        value = [value]  # "--model.cutoffs=2000": a list of one
    ok = any(
        (t is list and isinstance(value, list) and all(isinstance(v, int) for v in value))
        or (t is not list and isinstance(value, t) and not (t is int and isinstance(value, bool)))
        for t in allowed
    )
    if not ok:
        names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
        raise RnnkitError(f"{source}: {key} must be {names}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise RnnkitError(f"{source}: {key} must be one of {list(CHOICES[key])}, got {value!r}")
    bounds = RANGES.get(key)
    for number in value if isinstance(value, list) else [value]:
        if (
            isinstance(number, float)
            and not math.isfinite(number)
            and (bounds is None or number not in bounds)
        ):
            raise RnnkitError(f"{source}: {key} must be a finite number, got {_number_text(number)}")
        if bounds is not None and number not in bounds:
            each = " each" if isinstance(value, list) else ""
            raise RnnkitError(f"{source}: {key} must be{each} {bounds}, got {_number_text(number)}")
    return value


def _number_text(value: object) -> str:
    return _number(value) if isinstance(value, float) and not math.isfinite(value) else repr(value)


_GATES = {"elman": 1, "irnn": 1, "gru": 3, "lstm": 4, "lnlstm": 4, "mingru": 2, "minlstm": 3, "slstm": 4}
_NO_W_HH = ("mingru", "minlstm")  # gates from x_t alone: no recurrent weight matrix, one bias
_LAYER_NORMS = {"lnlstm": 18}  # LayerNorm gains and shifts per unit: W x and U h (4 gates each), c_t


def scaled_cutoffs(config: ModelConfig, vocab_size: int) -> list[int]:
    """The adaptive head's cutoffs for a vocabulary of ``vocab_size``: as written, or, when
    ``model.cutoffs_vocab`` says which vocabulary they were set for, scaled in proportion
    (PTB's [2000, 5000] of 10,000 words are [6656, 16639] of 33,278)."""
    if config.cutoffs_vocab is None or config.cutoffs_vocab == vocab_size:
        return list(config.cutoffs)
    return [max(1, round(c * vocab_size / config.cutoffs_vocab)) for c in config.cutoffs]


def recurrent_parameters(model: ModelConfig, task: str = "lm") -> int:
    """The parameters of ``model``'s recurrent layers (and, for a tagger, its character
    BiLSTM), from the settings alone: no vocabulary, no torch. An estimate within a few
    biases per gate of what :mod:`rnnkit.models` builds; the embedding and softmax, which
    depend on the vocabulary, are not counted."""
    gates = _GATES.get(model.cell, 4)
    directions = 2 if model.bidirectional else 1
    total = 0
    size = model.embed_size
    if task == "tag" and model.char_embed > 0:
        total += 2 * 4 * model.char_hidden * (model.char_embed + model.char_hidden + 2)
        size += 2 * model.char_hidden
    recurrent, biases = (0, 1) if model.cell in _NO_W_HH else (model.hidden_size, 2)
    norms = _LAYER_NORMS.get(model.cell, 0) * model.hidden_size
    for _ in range(model.num_layers):
        total += directions * (gates * model.hidden_size * (size + recurrent + biases) + norms)
        size = directions * model.hidden_size
    if model.projection_size is not None:
        total += size * model.projection_size
    return total


_SIZES = ("model.embed_size", "model.hidden_size", "model.num_layers", "model.projection_size", "model.cell")
_SIZES += ("model.bidirectional", "model.char_embed", "model.char_hidden")


def _check_size(config: RunConfig, values: dict[str, tuple[object, str]]) -> None:
    """Refuse a model whose recurrent layers exceed :data:`MAX_RECURRENT_PARAMETERS`."""
    count = recurrent_parameters(config.model, config.task)
    if count <= MAX_RECURRENT_PARAMETERS:
        return
    given = [key for key in values if key in _SIZES]
    source = values[given[-1]][1] if given else "defaults"
    named = ", ".join(f"{k} = {getattr(config.model, k.partition('.')[2])}" for k in given)
    raise RnnkitError(
        f"{source}: the model's recurrent layers would have {count:,} parameters ({4 * count:,} bytes as "
        f"fp32) with {named}; at most {MAX_RECURRENT_PARAMETERS:,} (2**31) fit"
    )


def _types(hint) -> tuple:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _types(arg))
    if origin is list:
        return (list,)
    return (hint,)


def _parse(key: str, text: str) -> object:
    """A command-line value: none/null, true/false, an int, a float (inf too), a list, or text."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if "," in text:
        return [_parse(key, part) for part in text.split(",") if part.strip()]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        return number if not math.isnan(number) else text
    except ValueError:
        return text


def to_dict(config: RunConfig) -> dict:
    """The resolved configuration as plain data (saved with every run)."""
    return dataclasses.asdict(config)


def from_dict(data: dict, source: str) -> RunConfig:
    """Rebuild a saved configuration, checking every value as a TOML file's."""
    if not isinstance(data, dict):
        raise RnnkitError(f"{source}: expected a JSON object with the run configuration")
    values: dict[str, tuple[object, str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            values.update({f"{key}.{k}": (v, source) for k, v in value.items()})
        else:
            values[key] = (value, source)
    return _build(values)
