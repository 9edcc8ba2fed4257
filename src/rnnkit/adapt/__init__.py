"""Evaluation that adapts to the text as it reads it: dynamic evaluation and the neural cache.

Both read a held-out text as one stream, left to right, a segment at a time, and score
every token *before* anything is learnt from it:

* :class:`DynamicEval` (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence
  Models", §5): after scoring a segment, one gradient step of the segment's loss on the
  weights, RMS-normalised by gradient statistics of the training data, with a decay back
  toward the trained weights ("RMS with a global prior").
* :class:`NeuralCache` (Grave et al. 2017, "Improving Neural Language Models with a
  Continuous Cache", §3): the model's distribution mixed with one over the words that
  followed the most recent hidden states most like the current one.

:func:`evaluate_adapted` scores a split with either or both; :func:`tune` searches their
settings on the validation split only and stores them in the run (``adapt.json``, see
:func:`load_settings`). The model on disk is never changed: the weights adapt in a copy.
"""

from rnnkit.adapt.methods import AdaptiveStream, DynamicEval, NeuralCache, gradient_statistics
from rnnkit.adapt.run import Adapter, LineScorer, evaluate_adapted, split_text, training_ids, tune
from rnnkit.adapt.settings import (
    ADAPT_FILE,
    METHODS,
    AdaptSettings,
    CacheSettings,
    DynamicSettings,
    load_settings,
    parse_methods,
    resolve,
)

__all__ = [
    "ADAPT_FILE",
    "METHODS",
    "AdaptSettings",
    "Adapter",
    "AdaptiveStream",
    "CacheSettings",
    "DynamicEval",
    "DynamicSettings",
    "LineScorer",
    "NeuralCache",
    "evaluate_adapted",
    "gradient_statistics",
    "load_settings",
    "parse_methods",
    "resolve",
    "split_text",
    "training_ids",
    "tune",
]
