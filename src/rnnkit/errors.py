"""The project's one error type for mistakes a user can fix."""


class RnnkitError(ValueError):
    """A user mistake: a bad argument, shape, file or option.

    The message names what is wrong (argument, file and line, or shape), what it got
    and what was expected, in one line. It subclasses :class:`ValueError` so callers
    that catch ``ValueError`` keep working.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM stopped the command (a scheduler's or ``kill``'s request): caught where Ctrl-C is,
    said as "stopped (SIGTERM)", exit status 143 (128 + 15)."""
