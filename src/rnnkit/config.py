"""Typed run configuration: defaults -> TOML file -> ``--section.field=value`` overrides."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.errors import RnnkitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ModelConfig:
    """The network. Cell options apply to the cells that take them (see ``rnnkit.rnn``).

    Dropout: ``dropout`` on the RNN's output, and on the word vectors and between layers
    unless ``input_dropout`` / ``layer_dropout`` say otherwise; ``embedding_dropout``
    drops whole words, ``weight_drop`` entries of each W_hh, ``locked_dropout`` shares
    masks over time (the AWD-LSTM regularisers).
    """

    cell: str = "lstm"
    embed_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.0
    input_dropout: float | None = None
    layer_dropout: float | None = None
    embedding_dropout: float = 0.0
    weight_drop: float = 0.0
    locked_dropout: bool = False
    projection_size: int | None = None
    bias: bool = True
    nonlinearity: str = "tanh"
    reset_after: bool = True
    forget_bias: float | None = None
    scale: float = 1.0
    input_std: float = 0.001
    learn_initial_state: bool = False
    init_range: float | None = None
    embed_init_range: float | None = None
    tie_weights: bool = False
    head: str = "full"
    head_bias: bool = True
    cutoffs: list[int] = field(default_factory=list)
    div_value: float = 4.0
    char_embed: int = 0
    char_hidden: int = 50
    crf: bool = False
    pooling: str = "final"


@dataclass(frozen=True)
class DataConfig:
    """How text becomes token ids (see ``rnnkit.data.corpora``).

    Taggers and classifiers: ``lowercase`` and ``zero_digits`` (every digit read as 0)
    apply to the word-vector lookup only; a tagger's character feature still reads the
    word as written.
    """

    level: str = "word"
    min_freq: int = 1
    max_size: int | None = None
    valid_fraction: float = 0.1
    column: str = "upos"
    classes: int = 5
    phrases: bool = False
    lowercase: bool = False
    zero_digits: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, truncated BPTT, guards and logging."""

    optimizer: str = "sgd"
    lr: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    decay_start: int = 4
    decay: float = 0.5
    plateau_factor: float = 0.25
    epochs: int = 13
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 35
    variable_bptt: bool = False
    nonmono: int = 5
    clip_norm: float = 5.0
    clip_value: float | None = None
    max_bad_steps: int = 5
    on_nonfinite: str = "skip"
    nonfinite_factor: float = 0.5
    loss_spike: float = 0.0
    precision: str = "fp32"
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    log_every: int = 100
    checkpoint_every: int = 0
    eval_every: int = 0
    backend: str = "auto"
    dist_timeout: float = 300.0


@dataclass(frozen=True)
class RunConfig:
    task: str = "lm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
CHOICES = {
    "task": ("lm", "tag", "classify"),
    "model.cell": ("elman", "irnn", "gru", "lstm"),
    "model.nonlinearity": ("sigmoid", "tanh", "relu"),
    "model.head": ("full", "adaptive"),
    "data.level": ("word", "symbol", "char", "bpe"),
    "data.column": ("upos", "xpos"),
    "data.classes": (5, 2),
    "model.pooling": ("final", "max", "mean"),
    "train.optimizer": ("sgd", "adam", "ntasgd"),
    "train.schedule": ("constant", "zaremba", "plateau"),
    "train.on_nonfinite": ("skip", "reduce", "stop"),
    "train.precision": ("fp32", "bf16"),
    "train.backend": ("auto", "gloo", "nccl"),
}


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Defaults, updated by the TOML file at ``path``, then by ``section.field=value`` strings."""
    raw: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            raise RnnkitError(f"{path}: no such config file") from None
        except OSError as err:
            raise RnnkitError(f"{path}: cannot read the config file ({err.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise RnnkitError(f"{path}: not valid TOML ({err})") from None
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
            known = ["task"] + [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
            raise RnnkitError(f"{source}: unknown setting {key!r}; known settings: {', '.join(known)}")
        sections[section][name] = _check(key, value, hints[section][name], source)
    return RunConfig(**top, **{name: SECTIONS[name](**kw) for name, kw in sections.items()})


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
    return value


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
