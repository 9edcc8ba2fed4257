"""How a run turns text into tokens and back: words, symbols, characters or byte-level BPE.

A :class:`Codec` is the level plus, for ``bpe``, the subword tokenizer learned on the
training text with Hugging Face ``tokenizers`` (saved in the run directory as
``tokenizer.json``: plain data). Corpora, prompts, scored lines and generated text all go
through the run's codec, so they are always split the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rnnkit import names
from rnnkit.data.vocab import EOS, UNK
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic
from rnnkit.training.rundir import TOKENIZER, RunDir

LEVELS = names.LEVELS
"""``word``: whitespace-separated tokens and an ``<eos>`` after every line (PTB, WikiText);
``symbol``: the same, for corpora whose tokens are characters written with spaces between
them (PTB-char, where ``_`` marks word boundaries; report bits per symbol); ``char``:
every character of the raw text, newlines included (Tiny Shakespeare); ``bpe``: byte-level
BPE subwords of the raw text (Sennrich et al. 2016; GPT-2's byte alphabet, so no text is
ever unknown), newlines included."""

TOKENIZER_FILE = TOKENIZER  # the name in a run directory (see rnnkit.training.rundir)
DEFAULT_BPE_SIZE = 8192


def split_lines(text: str) -> list[str]:
    """``text`` cut after every ``\\n`` (kept); a last line without one is kept too."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


class Codec:
    """Text <-> tokens at one level (see :data:`LEVELS`).

    Args:
        level: one of :data:`LEVELS`.
        tokenizer: the trained ``tokenizers.Tokenizer``; required for ``bpe`` only.
    """

    def __init__(self, level: str, tokenizer: Tokenizer | None = None) -> None:
        if level not in LEVELS:
            raise RnnkitError(f"level must be one of {list(LEVELS)}, got {level!r}")
        if (level == "bpe") != (tokenizer is not None):
            raise RnnkitError("a tokenizer goes with level 'bpe' and only with it")
        self.level, self.tokenizer = level, tokenizer

    @classmethod
    def train_bpe(cls, lines: Iterable[str], vocab_size: int = DEFAULT_BPE_SIZE, min_freq: int = 2) -> Codec:
        """Learn byte-level BPE merges on ``lines`` (newlines kept) up to ``vocab_size`` tokens."""
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet):
            raise RnnkitError(
                f"data.max_size must be at least {len(alphabet)} (the byte alphabet) for BPE, "
                f"got {vocab_size}"
            )
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        # PTB writes unknown words as a literal <unk>: one special token, never split into
        # pieces (the byte alphabet would otherwise learn "<", "unk", ">").
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            initial_alphabet=alphabet,
            special_tokens=[UNK],
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer)
        return cls("bpe", tokenizer)

    def corpus_tokens(self, text: str) -> list[str]:
        """The tokens of a corpus text: the tokens of each of its lines, in order.

        A line ends at ``\\n`` (and only there); for ``word``/``symbol`` each line is
        followed by ``<eos>``. Line by line, so that reading a file as a stream of lines
        (:func:`rnnkit.tasks.lm.evaluate_file`) gives exactly the same tokens.
        """
        lines = split_lines(text)
        if self.level == "bpe":
            return [t for encoding in self.tokenizer.encode_batch(lines) for t in encoding.tokens]
        return [t for line in lines for t in self.line_tokens(line)]

    def line_tokens(self, line: str) -> list[str]:
        """The tokens of one line of a corpus (with its ``\\n`` if it has one)."""
        if self.level == "char":
            return list(line)
        if self.level == "bpe":
            return self.tokenizer.encode(line).tokens
        return [*line.split(), EOS]

    def piece_tokens(self, text: str, end: str | None) -> list[str]:
        """The tokens of a piece of a line (:class:`rnnkit.data.lines.Piece`) that ``end``
        follows: ``None`` when the line goes on, ``"\\n"`` or ``""`` (the end of the text
        without one) when it ends. A line cut where :func:`rnnkit.data.lines.read_pieces`
        cuts gives, piece by piece, the tokens :meth:`line_tokens` gives the whole line."""
        if end is None:
            return self.prompt_tokens(text)
        return self.line_tokens(text + end)

    def prompt_tokens(self, text: str) -> list[str]:
        """The tokens of a prompt or prefix, as written (no sentence end added)."""
        if self.level == "char":
            return list(text)
        if self.level == "bpe":
            return self.tokenizer.encode(text).tokens
        return text.split()

    def join(self, tokens: list[str]) -> str:
        """Tokens back to text."""
        if self.level == "char":
            return "".join(tokens)
        if self.level == "bpe":
            return self.tokenizer.decoder.decode(tokens)
        return " ".join(tokens)

    def token_text(self, token: str) -> str:
        """How one token reads as text: a BPE token decoded from GPT-2's byte alphabet
        (``Ġthe`` is ``" the"``, ``Ċ`` a newline); other levels' tokens as they are.
        A BPE token holding part of a multibyte character decodes to U+FFFD."""
        return self.tokenizer.decoder.decode([token]) if self.level == "bpe" else token

    @property
    def sentence_end(self) -> str:
        """The token a fresh line is conditioned on: ``<eos>``, or the newline."""
        if self.level == "word" or self.level == "symbol":
            return EOS
        return "\n" if self.level == "char" else self.tokenizer.encode("\n").tokens[0]

    def ends_sentence(self, token: str) -> bool:
        """Whether ``token`` ends a line of the corpus (an ``<eos>`` or a newline)."""
        if self.level == "bpe":
            return "\n" in self.join([token])
        return token == self.sentence_end

    def ends_text(self, previous: str | None, token: str) -> bool:
        """Whether generation stops at ``token`` (after ``previous``, the token before it).

        ``word``, ``symbol`` and ``bpe`` text is one sentence a line: it stops at the end
        of the line. A ``char`` corpus (Tiny Shakespeare) breaks its lines inside a
        passage, so a newline alone goes on; a blank line (a newline after a newline)
        ends the passage.
        """
        if self.level == "char":
            return token == "\n" and previous == "\n"
        return self.ends_sentence(token)

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write the tokenizer (``bpe`` only) as JSON into ``run_dir``, atomically."""
        if self.tokenizer is not None:
            write_text_atomic(RunDir(run_dir).tokenizer, self.tokenizer.to_str() + "\n")

    @classmethod
    def load(cls, run_dir: str | os.PathLike, level: str) -> Codec:
        """The codec a run was trained with (its tokenizer from ``run_dir`` for ``bpe``)."""
        if level != "bpe":
            return cls(level)
        path = RunDir(run_dir).tokenizer
        try:
            return cls("bpe", Tokenizer.from_str(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise RnnkitError(f"{path}: missing; a BPE run keeps its tokenizer there") from None
        except Exception as err:  # tokenizers raises a bare Exception on bad JSON
            raise RnnkitError(f"{path}: not a tokenizers JSON file ({str(err).splitlines()[0]})") from None


_DIGIT = re.compile(r"\d")


def word_key(lowercase: bool = False, zero_digits: bool = False) -> Callable[[str], str]:
    """How a tagger or classifier looks a word up in its vocabulary: as written, lowercased,
    and/or with every digit read as ``0`` (``"1996"`` and ``"2001"`` share a vector)."""

    def key(word: str) -> str:
        if lowercase:
            word = word.lower()
        return _DIGIT.sub("0", word) if zero_digits else word

    return key if lowercase or zero_digits else str
