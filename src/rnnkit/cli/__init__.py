"""The ``rnnkit`` command."""
