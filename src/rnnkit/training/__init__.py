"""Training machinery shared by every task: loop, clipping, schedules, checkpoints, logging."""
