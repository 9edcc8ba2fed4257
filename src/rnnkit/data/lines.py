"""Lines of a byte stream in bounded memory: a line longer than a limit comes in pieces.

``for raw in stream`` holds a whole line, however long: a 50 MB line is 50 MB at once, and
a line that never ends (``yes | tr '\\n' ' '``) grows until memory runs out. The readers
here hold at most :data:`LINE_LIMIT` bytes of a line: a longer one comes out in pieces,
each flagged as going on, cut where the text can be cut without changing how it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from rnnkit.errors import RnnkitError

__all__ = ["LINE_LIMIT", "Piece", "read_pieces", "split_text"]

LINE_LIMIT = 1 << 20
"""The most bytes of a line held at once (1 MiB): a longer line comes in pieces."""

_SPACE = b" \t\r\x0b\x0c"
# The last whitespace byte that comes right before a non-whitespace one, searched from the
# end (the greedy .* backtracks from the end of the block, so the cost is how far back it is).
_LAST_GAP = re.compile(rb"(?s).*[ \t\r\x0b\x0c](?=[^ \t\r\n\x0b\x0c])")
_LAST_GAP_TEXT = re.compile(r"(?s).*[ \t\r\x0b\x0c](?=[^ \t\r\n\x0b\x0c])")


class Piece(NamedTuple):
    """All or part of one line of a stream.

    Attributes:
        text: the piece's text, decoded, without the line end.
        number: the line's number, from 1 (counted from where reading started).
        offset: the byte offset of the piece's first byte in the stream.
        size: how many bytes the piece's text has.
        first: whether the piece opens its line.
        end: what follows the piece: ``None`` when the line goes on in the next piece,
            ``"\\n"`` when the line ends there, ``""`` when the stream ends without a newline.
    """

    text: str
    number: int
    offset: int
    size: int
    first: bool
    end: str | None

    @property
    def last(self) -> bool:
        """Whether the piece closes its line."""
        return self.end is not None


def read_pieces(
    stream: BinaryIO, name: str, limit: int = LINE_LIMIT, start: int = 0, first: bool = True
) -> Iterator[Piece]:
    """The lines of a binary ``stream`` (named ``name`` in messages), each in one piece or
    more, holding at most ``limit`` bytes of a line at a time.

    A line longer than ``limit`` is cut just before its last whitespace that precedes a
    word (so that words, and the byte-level BPE pre-tokens that carry their leading space,
    stay whole: the pieces' tokens are the line's tokens); a run of ``limit`` bytes with no
    such place (one word longer than the limit) is cut at its last whole UTF-8 character.
    The cuts depend only on the bytes from where a piece starts, so reading again from a
    piece's offset (``start``, with the stream positioned there, and ``first``: whether that
    piece opens its line) gives the same pieces.

    Raises:
        RnnkitError: a byte that is not UTF-8, naming the line and its byte offset.
    """
    if limit < 8:
        raise RnnkitError(f"a line limit of {limit} bytes is too small; 8 at least")
    number, offset = 1, start
    carry = b""
    while True:
        raw = carry + stream.readline(limit - len(carry))
        carry = b""
        if not raw:
            if not first:  # the stream ended right after a cut: the line ends there
                yield Piece("", number, offset, 0, False, "")
            return
        if raw.endswith(b"\n"):
            body, end = raw[:-1], "\n"
        elif len(raw) < limit:  # readline stops short of the limit only at the end of the stream
            body, end = raw, ""
        else:
            cut = _cut(raw)
            body, carry, end = raw[:cut], raw[cut:], None
        yield Piece(_decode(body, name, number, offset), number, offset, len(body), first, end)
        offset += len(raw) - len(carry)
        first = end is not None
        if end is not None:
            number += 1


def _cut(block: bytes) -> int:
    """Where to cut a block of a long line (at least 1 byte in): just before its last
    whitespace that precedes a non-whitespace byte, else after its last whole UTF-8
    character."""
    gap = _LAST_GAP.match(block)
    if gap is not None and gap.end() > 1:
        return gap.end() - 1
    cut = len(block)
    lead = cut - 1
    while lead > 0 and cut - lead < 4 and block[lead] & 0xC0 == 0x80:  # continuation bytes
        lead -= 1
    need = 4 if block[lead] >= 0xF0 else 3 if block[lead] >= 0xE0 else 2 if block[lead] >= 0xC0 else 1
    if lead > 0 and cut - lead < need:  # the last character is not whole: it goes to the next piece
        cut = lead
    return cut


def _decode(body: bytes, name: str, number: int, offset: int) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"{name}: line {number}, byte offset {offset + err.start}"
        raise RnnkitError(f"{where}: not UTF-8 (byte 0x{body[err.start]:02x})") from None


def split_text(text: str, limit: int = LINE_LIMIT) -> Iterator[str]:
    """``text`` (one line, already in memory) in pieces of at most ``limit`` characters, cut
    as :func:`read_pieces` cuts a line: before a whitespace that precedes a word, else
    anywhere. Their tokens are the text's tokens."""
    if limit < 8:
        raise RnnkitError(f"a line limit of {limit} characters is too small; 8 at least")
    start = 0
    while len(text) - start > limit:
        gap = _LAST_GAP_TEXT.match(text, start, start + limit)
        cut = gap.end() - 1 if gap is not None and gap.end() - 1 > start else start + limit
        yield text[start:cut]
        start = cut
    yield text[start:]
