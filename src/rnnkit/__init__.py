"""rnnkit: recurrent neural networks on text, exactly as the CS224N lecture writes them, and fast."""

from importlib.metadata import PackageNotFoundError, version

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell, LSTMState, detach_state, irnn_cell
from rnnkit.errors import RnnkitError
from rnnkit.layers import RNN
from rnnkit.registry import CELLS, rnn

try:
    __version__ = version("rnnkit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"


def load(run_dir, which: str = "best", device="cpu"):
    """A trained run: ``model, vocab, config, codec`` (the model in eval mode on ``device``).

    ``codec`` turns text into the run's tokens and back (``codec.prompt_tokens``,
    ``codec.join``); :mod:`rnnkit.tasks.lm` scores and generates with all four.
    """
    from rnnkit.training.run import load as _load

    return _load(run_dir, which, device)


__all__ = [
    "CELLS",
    "RNN",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "RnnkitError",
    "__version__",
    "detach_state",
    "irnn_cell",
    "load",
    "rnn",
]
