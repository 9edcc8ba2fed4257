"""The lists of names users choose from, in one place and without torch.

Each list is the one source of truth for its names: the settings' allowed values
(:data:`rnnkit.config.CHOICES`), the command line's choices, and each runtime registry or
check (``registry.CELLS``, ``cells.elman.ACTIVATIONS``, ``models.classifier``'s pooling,
``data.text.Codec``'s level, the task registry, ``experiments.EXPERIMENTS``) read it here;
``tests/test_names.py`` checks that every registry holds exactly its list. The order is
the order users see (``rnnkit config``, ``--help``, error messages).
"""

from __future__ import annotations

CELLS = ("elman", "irnn", "gru", "lstm", "lnlstm", "mingru", "minlstm", "slstm")
"""The recurrent cells (:data:`rnnkit.registry.CELLS`): the lecture's, then those that came after."""

NONLINEARITIES = ("sigmoid", "tanh", "relu")
"""An Elman cell's f (:data:`rnnkit.cells.elman.ACTIVATIONS`)."""

FORGET_GATES = ("sigmoid", "exp")
"""An sLSTM's forget gate: sigma(f~) or exp(f~) (:data:`rnnkit.cells.slstm.FORGET_GATES`)."""

CANDIDATES = ("g", "linear")
"""A minGRU's or minLSTM's candidate: the paper's positive g(W x + b) or W x + b
(:data:`rnnkit.cells.mingru.CANDIDATES`)."""

POOLINGS = ("final", "max", "mean")
"""How a classifier reads a sentence's states into one vector (:mod:`rnnkit.models.classifier`)."""

LEVELS = ("word", "symbol", "char", "bpe")
"""What a language model's token is (:class:`rnnkit.data.text.Codec`)."""

TASK_CLASSES = {
    "lm": "rnnkit.tasks.lm:LanguageModelling",
    "tag": "rnnkit.tasks.tagging:Tagging",
    "classify": "rnnkit.tasks.classification:Classification",
}
"""Every task by the name a run's configuration gives it, and the class that implements it
(``module:Class``; :data:`rnnkit.tasks.TASKS` imports them). A new task is a new module and
one line here: the setting's allowed values and the registry both come from this."""

TASKS = tuple(TASK_CLASSES)
"""What a run learns: next word, a tag per token, a label per sentence."""

EXPERIMENTS = ("adding", "clipping", "long-range", "init")
"""``rnnkit experiment NAME`` (:data:`rnnkit.experiments.EXPERIMENTS`)."""

SCALES = ("tiny", "small", "full")
"""``rnnkit experiment --scale``: seconds (a smoke test), minutes, hours."""
