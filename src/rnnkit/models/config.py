"""Build every task's model from its configuration: the one place that turns config strings into modules.

:func:`build_model` (a language model), :func:`build_tagger`, :func:`build_classifier`, each
over the recurrent stack of :func:`build_encoder`.
"""

from __future__ import annotations

import math

import torch

from rnnkit.config import DataConfig, ModelConfig, scaled_cutoffs
from rnnkit.errors import RnnkitError
from rnnkit.layers.rnn import RNN
from rnnkit.models.classifier import Classifier
from rnnkit.models.heads import AdaptiveSoftmax, FullSoftmax, OutputHead
from rnnkit.models.language_model import LanguageModel
from rnnkit.models.tagger import CharFeature, Tagger
from rnnkit.registry import cell_options, rnn

_DEFAULTS = ModelConfig()

CHAR_CELL = "lstm"
"""The cell of a tagger's character feature: a BiLSTM over a word's characters (Lample et al.
2016). The run configuration has no setting for it (``model.cell`` is the word encoder's)."""

# Model settings that only one task's model has; set for another task they are refused, not ignored.
TASK_ONLY = {
    "lm": (
        "projection_size",
        "init",
        "init_range",
        "embed_init_range",
        "tie_weights",
        "head",
        "head_bias",
        "cutoffs",
        "cutoffs_vocab",
        "div_value",
    ),
    "tag": ("char_embed", "char_hidden", "crf"),
    "classify": ("pooling",),
}


def check_task_options(config: ModelConfig, task: str, data: DataConfig | None = None) -> None:
    """Refuse a model setting that ``task``'s model does not have (e.g. ``crf`` for a language
    model), and the word-lookup settings of ``data`` for a language model (its codec owns the text)."""
    if task == "lm" and data is not None:
        for name in ("lowercase", "zero_digits"):
            if getattr(data, name):
                raise RnnkitError(
                    f"data.{name} applies to tasks 'tag' and 'classify' only; this run's task is 'lm'"
                )
    for owner, names in TASK_ONLY.items():
        if owner == task:
            continue
        for name in names:
            if getattr(config, name) != getattr(_DEFAULTS, name):
                raise RnnkitError(f"model.{name} applies to task {owner!r} only; this run's task is {task!r}")


def build_encoder(config: ModelConfig, input_size: int) -> RNN:
    """The recurrent stack ``config`` describes, over inputs of ``input_size``: every task's encoder.

    Cell options (``nonlinearity``, ``reset_after``, ``forget_bias``, ``forget``, ``candidate``,
    ``scale``,
    ``input_std``) go to the cells that take them; setting one a cell does not take is
    an error rather than silently ignored.
    """
    for name in ("dropout", "input_dropout", "layer_dropout", "embedding_dropout", "weight_drop"):
        value = getattr(config, name)
        if value is not None and not 0.0 <= value < 1.0:
            raise RnnkitError(f"model.{name} must be a probability in [0, 1), got {value!r}")
    accepted = set(cell_options(config.cell))
    options = {}
    for name in (
        "bias",
        "nonlinearity",
        "reset_after",
        "forget_bias",
        "forget",
        "candidate",
        "scale",
        "input_std",
        "learn_initial_state",
    ):
        value = getattr(config, name)
        if name in accepted:
            options[name] = value
        elif value != getattr(_DEFAULTS, name):
            raise RnnkitError(f"model.{name} = {value!r} does not apply to cell {config.cell!r}")
    return rnn(
        config.cell,
        input_size,
        config.hidden_size,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout if config.layer_dropout is None else config.layer_dropout,
        locked_dropout=config.locked_dropout,
        weight_drop=config.weight_drop,
        **options,
    )


def build_model(config: ModelConfig, vocab_size: int) -> LanguageModel:
    """A language model as ``config`` describes it, for a vocabulary of ``vocab_size``
    (its encoder from :func:`build_encoder`)."""
    if config.projection_size is not None and config.projection_size <= 0:
        raise RnnkitError(f"model.projection_size must be a positive integer, got {config.projection_size}")
    seeded = torch.get_rng_state()  # model.init = recipe draws again from here, in its order
    recurrent = build_encoder(config, config.embed_size)
    out_size = config.hidden_size * (2 if config.bidirectional else 1)
    if config.projection_size is not None:
        out_size = config.projection_size
    head = _head(config, out_size, vocab_size)
    model = LanguageModel(
        vocab_size,
        config.embed_size,
        recurrent,
        head,
        dropout=config.dropout,
        input_dropout=config.input_dropout,
        embedding_dropout=config.embedding_dropout,
        locked_dropout=config.locked_dropout,
        projection_size=config.projection_size,
    )
    if config.init == "recipe":
        _recipe_init(model, seeded)
    if config.init_range is not None:  # Zaremba et al. 2014: every parameter ~ U(-0.1, 0.1)
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-config.init_range, config.init_range)
    if config.embed_init_range is not None:  # AWD-LSTM: L ~ U(-0.1, 0.1), the rest torch's default
        with torch.no_grad():
            model.embedding.weight.uniform_(-config.embed_init_range, config.embed_init_range)
    if config.tie_weights:  # Press & Wolf 2017: the output matrix is the embedding matrix
        model.head.proj.weight = model.embedding.weight
    return model


def _recipe_init(model: LanguageModel, seeded: torch.Tensor) -> None:
    """The PyTorch word-language-model example's initialisation, drawn as it draws it: from the
    random state the model's construction began in, its modules in its order (word vectors,
    the recurrent layers, the output layer, each by torch's default), then word vectors and the
    output weights ~ U(-0.1, 0.1) and the output bias 0. The same seed, the example's model."""
    if not isinstance(model.head, FullSoftmax) or model.projection is not None:
        raise RnnkitError("model.init = 'recipe' is the example's model: model.head = 'full', no projection")
    torch.set_rng_state(seeded)
    with torch.no_grad():
        model.embedding.reset_parameters()
        bound = 1.0 / math.sqrt(model.rnn.hidden_size)  # nn.RNN/GRU/LSTM's, in their order
        for name, p in model.rnn.named_parameters():
            p.zero_() if name.startswith(("h_0", "c_0")) else p.uniform_(-bound, bound)
        model.head.proj.reset_parameters()
        model.embedding.weight.uniform_(-0.1, 0.1)
        if model.head.proj.bias is not None:
            model.head.proj.bias.zero_()
        model.head.proj.weight.uniform_(-0.1, 0.1)


def _head(config: ModelConfig, out_size: int, vocab_size: int) -> OutputHead:
    if config.head == "adaptive":
        if config.tie_weights:
            raise RnnkitError(
                "model.tie_weights needs model.head = 'full' (the adaptive softmax has no single W_S)"
            )
        cutoffs = scaled_cutoffs(config, vocab_size)
        return AdaptiveSoftmax(out_size, vocab_size, cutoffs, config.div_value, config.head_bias)
    if config.tie_weights and out_size != config.embed_size:
        raise RnnkitError(
            f"model.tie_weights needs the RNN's output size ({out_size}) to equal model.embed_size "
            f"({config.embed_size}); set model.projection_size = {config.embed_size} to map it there"
        )
    return FullSoftmax(out_size, vocab_size, bias=config.head_bias)


def build_tagger(config: ModelConfig, words: int, chars: int, tags: int) -> Tagger:
    """A tagger as ``config`` describes it (``char_embed`` > 0 adds the character feature, a
    bidirectional :data:`CHAR_CELL` RNN)."""
    char = None
    if config.char_embed > 0:
        char = CharFeature(
            chars,
            config.char_embed,
            rnn(CHAR_CELL, config.char_embed, config.char_hidden, bidirectional=True),
        )
    input_size = config.embed_size + (char.out_size if char is not None else 0)
    return Tagger(
        words,
        config.embed_size,
        build_encoder(config, input_size),
        tags,
        chars=char,
        dropout=config.dropout,
        crf=config.crf,
        input_dropout=config.input_dropout,
        embedding_dropout=config.embedding_dropout,
    )


def build_classifier(config: ModelConfig, words: int, classes: int) -> Classifier:
    """A sentence classifier as ``config`` describes it (``pooling`` reads the states into one vector)."""
    return Classifier(
        words,
        config.embed_size,
        build_encoder(config, config.embed_size),
        classes,
        config.pooling,
        config.dropout,
        input_dropout=config.input_dropout,
        embedding_dropout=config.embedding_dropout,
    )
