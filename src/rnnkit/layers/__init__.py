"""Composition of cells in time and depth; no recurrence math lives here."""

from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.rnn import RNN
from rnnkit.layers.stacked import Stacked

__all__ = ["RNN", "Bidirectional", "Recurrent", "Stacked"]
