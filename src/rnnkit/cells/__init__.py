"""Recurrent cells, one recurrence per file, each ``forward`` the lecture's equations."""

from rnnkit.cells.base import LSTMState, RecurrentCell, SLSTMState, State, detach_state, hidden_of
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.irnn import irnn_cell
from rnnkit.cells.lnlstm import LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.mingru import MinGRUCell
from rnnkit.cells.minlstm import MinLSTMCell
from rnnkit.cells.slstm import SLSTMCell

__all__ = [
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "LayerNormLSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "RecurrentCell",
    "SLSTMCell",
    "SLSTMState",
    "State",
    "detach_state",
    "hidden_of",
    "irnn_cell",
]
