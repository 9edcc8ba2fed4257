"""Text that is safe to print: control characters shown as escapes, never sent raw.

A line read from a user's file may hold a NUL, an ANSI escape sequence (which a terminal
would obey), a TAB (which would split a tab-separated field in two) or a Unicode line
separator (which ``str.splitlines`` and many readers take for a line end). Outputs that
echo user text pass it through :func:`printable` first, so a terminal shows what the
bytes were and a tab-separated output keeps one record a line and its number of fields.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls, DEL, C1 controls (ESC starts a terminal command)
    "\u2028\u2029"  # line and paragraph separators: line ends to str.splitlines
    "\u202a-\u202e\u2066-\u2069"  # bidirectional overrides: text shown in another order
    "]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\t``, ``\\n``,
    ``\\r``, ``\\x1b``, ``\\u2028`` ...); any other character, backslashes included, as it is.

    >>> printable("a\\tb\\x1b[31mc")
    'a\\\\tb\\\\x1b[31mc'
    """
    return _UNSAFE.sub(_escape, text)
