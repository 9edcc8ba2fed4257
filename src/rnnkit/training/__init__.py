"""Training every task: the loop (``fit``), its one resumable state, checkpoints, guards and progress.

``loop.py`` trains a task epoch by epoch; ``state.py`` holds everything training changes
besides the weights (what ``last/`` saves and ``--resume`` loads); ``checkpoint.py`` writes
and reads checkpoints; ``guard.py`` refuses bad steps; ``averaging.py`` is NT-ASGD's
average; ``clipping.py``, ``schedules.py``, ``progress.py``, ``lock.py`` and
``distributed.py`` do what they say; ``run.py`` reads a trained run back.
"""
