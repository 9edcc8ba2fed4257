"""Vocabularies: tokens <-> ids, built from counts with min-frequency and max-size, saved as JSON."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch

from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json, write_text_atomic

UNK = "<unk>"
EOS = "<eos>"


class Cut(NamedTuple):
    """What a vocabulary's size limit left out of the tokens it was built from."""

    types: int
    """Distinct tokens left out (seen often enough, but less often than those kept)."""
    tokens: int
    """How many times they occur."""
    total: int
    """Every token counted."""

    def __str__(self) -> str:
        share = 100 * self.tokens / max(self.total, 1)
        return f"{self.types} types ({share:.2f}% of the {self.total} tokens)"


class Vocab:
    """A fixed token list; id i is ``tokens[i]``. Unknown tokens map to ``<unk>`` if present.

    Args:
        tokens: the tokens, ids in order; no duplicates.
        unk: the token unknown words map to (None: unknown words are an error).
    """

    def __init__(self, tokens: Sequence[str], unk: str | None = UNK) -> None:
        self.cut: Cut | None = None
        """What :meth:`build`'s ``max_size`` left out, when it left anything out."""
        self.tokens = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.tokens)}
        if len(self.stoi) != len(self.tokens):
            dup = next(t for t, c in Counter(self.tokens).items() if c > 1)
            raise RnnkitError(f"vocabulary has the token {dup!r} more than once")
        if unk is not None and unk not in self.stoi:
            unk = None
        self.unk = unk

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (UNK, EOS),
    ) -> Vocab:
        """Count ``tokens`` and keep those seen at least ``min_freq`` times.

        Specials come first. The rest are ordered by count, most frequent first, ties
        by the token itself, so the same text always gives the same ids. With
        ``max_size``, only that many tokens in all (specials included) are kept; what that
        left out is the vocabulary's :attr:`cut`.
        """
        if min_freq < 1:
            raise RnnkitError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < len(specials):
            raise RnnkitError(f"max_size must be at least the {len(specials)} special tokens, got {max_size}")
        counts = Counter(tokens)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in specials),
            key=lambda t: (-counts[t], t),
        )
        kept = [*specials, *ranked]
        if max_size is None or len(kept) <= max_size:
            return cls(kept)
        vocab = cls(kept[:max_size])
        dropped = ranked[max_size - len(specials) :]
        vocab.cut = Cut(len(dropped), sum(counts[t] for t in dropped), sum(counts.values()))
        return vocab

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def index(self, token: str) -> int:
        """The id of ``token``, or of ``<unk>`` when it is unknown."""
        i = self.stoi.get(token)
        if i is not None:
            return i
        if self.unk is None:
            raise RnnkitError(f"token {token!r} is not in the vocabulary, which has no {UNK}")
        return self.stoi[self.unk]

    def encode(self, tokens: Iterable[str]) -> torch.Tensor:
        """Token ids as an int64 tensor."""
        return torch.tensor([self.index(t) for t in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "unk": self.unk}

    @classmethod
    def from_json(cls, data: dict, source: str = "vocabulary") -> Vocab:
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise RnnkitError(f"{source}: expected a JSON object with a list of strings under 'tokens'")
        unk = data.get("unk")
        if unk is not None and not isinstance(unk, str):
            raise RnnkitError(f"{source}: 'unk' must be a string or null, got {unk!r}")
        return cls(tokens, unk)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically (a crash never leaves half a file)."""
        write_text_atomic(path, json.dumps(self.to_json(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        data = read_json(path, missing=f"{path}: no such vocabulary file", what="vocabulary: not JSON")
        return cls.from_json(data, str(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.unk == other.unk

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, unk={self.unk!r})"
