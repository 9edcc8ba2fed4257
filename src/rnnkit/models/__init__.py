"""Encoders and heads: models return features; heads turn them into log-probabilities."""

from rnnkit.models.heads import AdaptiveSoftmax, FullSoftmax, OutputHead
from rnnkit.models.language_model import LanguageModel

__all__ = ["AdaptiveSoftmax", "FullSoftmax", "LanguageModel", "OutputHead"]
