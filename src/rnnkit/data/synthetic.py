"""Generated tasks that need no files: the package's demo and tests run on these."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.errors import RnnkitError

NAMES = ("jane", "john", "mary", "paul", "anna", "mark", "lucy", "tom")
FILLERS = (
    "walked", "into", "the", "room", "it", "was", "late", "in", "day", "too", "and", "then",
    "a", "of", "he", "she", "sat", "down", "by", "window", "rain", "fell", "outside", "slowly",
)  # fmt: skip
CUE = ("said", "hi", "to")


class LongRange:
    """The lecture's "Jane walked into the room. John walked in too. ... Jane said hi to ___".

    Each sequence is filler words, a name, ``d - 4`` more filler words, then "said hi to"
    and the blank, which is the name: the word at the blank is decided by a word exactly
    ``d`` tokens earlier, and nothing in between tells it (fillers are uniform, the cue is
    fixed). A language model gets it right only by carrying the name across ``d`` steps,
    so accuracy at the blank as a function of ``d`` shows how far a cell remembers. Chance
    is 1 / ``len(NAMES)``.

    Vocabulary (ids in order): ``<eos>``, the names, the fillers, the cue words.
    """

    MIN_DISTANCE = 4  # the name, then the three cue words: "jane said hi to ___"

    def __init__(self) -> None:
        self.tokens = ["<eos>", *NAMES, *FILLERS, *CUE]
        self.names = torch.arange(1, 1 + len(NAMES))
        self.fillers = torch.arange(1 + len(NAMES), 1 + len(NAMES) + len(FILLERS))
        self.cue = torch.arange(len(self.tokens) - len(CUE), len(self.tokens))

    @property
    def chance(self) -> float:
        return 1.0 / len(self.names)

    def batch(
        self, distances: Tensor, length: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sequences of ``length`` tokens, one per entry of ``distances`` (N,).

        Returns ``(tokens, blank, answer)``: tokens (length, N), time-major; ``blank`` (N,)
        the position of the blank (always ``length - 1``: the model predicts it from the
        inputs up to ``length - 2``); ``answer`` (N,) the name's id.
        """
        N = distances.numel()
        if int(distances.min()) < self.MIN_DISTANCE or int(distances.max()) > length - 1:
            raise RnnkitError(
                f"distances must be in [{self.MIN_DISTANCE}, {length - 1}] for sequences of {length} "
                f"tokens, got {int(distances.min())}..{int(distances.max())}"
            )
        picks = torch.randint(len(self.fillers), (length, N), generator=generator)
        tokens = self.fillers[picks]
        answer = self.names[torch.randint(len(self.names), (N,), generator=generator)]
        columns = torch.arange(N)
        blank = length - 1
        tokens[blank - distances, columns] = answer
        for i, word in enumerate(self.cue):
            tokens[blank - len(self.cue) + i] = word
        tokens[blank] = answer
        return tokens, torch.full((N,), blank), answer

    def text(self, tokens: Tensor) -> str:
        """One sequence (a column of ``tokens``) as words."""
        return " ".join(self.tokens[int(i)] for i in tokens)
