"""The lecture's experiments, each runnable as ``rnnkit experiment NAME`` with a fixed seed."""
