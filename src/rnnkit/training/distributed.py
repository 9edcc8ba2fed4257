"""Data-parallel training on several processes (``torch.distributed``, DistributedDataParallel).

``rnnkit train`` runs distributed when started by ``torchrun`` (or ``rnnkit train --nproc
N``, which calls the same launcher): every process runs the same loop on its share of the
data and DDP averages the gradients in the backward pass, so clipping and the optimizer
see the gradient of the global batch and every rank takes the same step.

- Language models: the stream is cut into ``train.batch_size`` columns as on one process
  and rank r takes columns ``[r·B/W, (r+1)·B/W)``; together the ranks compute exactly the
  single-process loss (the mean over the global batch's tokens).
- Taggers and classifiers: the epoch's shuffled batch order (one shared seed) is dealt
  out in turn, rank r taking positions r, r+W, ...; each rank's loss is weighted by its
  share of the step's tokens (sentences), so the averaged gradient is that of the mean
  over every rank's batch. The last ``len % W`` batches of an epoch's order are left out
  (a different few each epoch).
- Rank 0 alone writes checkpoints, logs, plots and prints; figures are summed over ranks.
  What differs between ranks (the torch random state, dropout's source, and a language
  model's carried hidden state) is gathered into rank 0's checkpoint, so every rank
  resumes exactly; resuming needs the same number of processes.
- Every collective has the process group's timeout (``train.dist_timeout`` seconds): a
  rank that dies or hangs ends the others with an error, never a silent hang.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rnnkit.errors import RnnkitError

PER_RANK = ("rng.torch", "rng.cuda.", "hidden.")
"""Checkpoint tensors that differ between ranks (saved for each rank as ``rank{r}.<name>``)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (the values themselves when not distributed)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, tensor: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and dtype on every rank), on the CPU."""
        if not self.distributed:
            return [tensor.cpu()]
        local = tensor.to(device)
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_from_env() -> World:
    """The world ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK (one process if unset)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise RnnkitError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({err})") from None
    if size < 1 or not 0 <= rank < size:
        raise RnnkitError(f"RANK={rank} and WORLD_SIZE={size} do not describe a process of the group")
    return World(rank, size, local)


def is_main_process() -> bool:
    """Whether this process prints and writes (rank 0, or not distributed)."""
    return world_from_env().main


def setup(device_name: str, backend: str, timeout_s: float) -> tuple[World, str]:
    """Join the process group when started by torchrun; returns the world and the device name
    this rank uses (``cuda:LOCAL_RANK`` for CUDA)."""
    world = world_from_env()
    if not world.distributed:
        return world, device_name
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    available = {"gloo": dist.is_gloo_available(), "nccl": dist.is_nccl_available()}
    if not available.get(backend, False):
        raise RnnkitError(f"train.backend {backend!r} is not available in this torch build")
    if backend == "nccl" and not cuda:
        raise RnnkitError("train.backend 'nccl' needs CUDA devices; use 'gloo' on CPUs")
    if cuda:
        torch.cuda.set_device(world.local_rank)
        device_name = f"cuda:{world.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    if dist.get_world_size() != world.size:
        raise RnnkitError(
            f"the process group has {dist.get_world_size()} ranks, WORLD_SIZE says {world.size}"
        )
    return world, device_name


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_rank_state(
    world: World, tensors: dict[str, torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    """Add every other rank's per-rank tensors to rank 0's ``tensors`` (as ``rank{r}.<name>``).
    A collective: every rank calls it at the same point."""
    if not world.distributed:
        return tensors
    for name in sorted(k for k in tensors if k.startswith(PER_RANK)):
        parts = world.gather(tensors[name], device)
        for r in range(1, world.size):
            tensors[f"rank{r}.{name}"] = parts[r]
    return tensors


def rank_state(
    world: World, record: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """This rank's view of a checkpoint's tensors (its own random state and hidden state);
    refuses a checkpoint written by another number of processes."""
    saved = int(record.get("world_size", 1))
    if saved != world.size:
        raise RnnkitError(
            f"this run was trained on {saved} process(es); resume it with the same number, not {world.size}"
        )
    if world.rank == 0:
        return {k: v for k, v in tensors.items() if not k.startswith("rank")}
    prefix = f"rank{world.rank}."
    own = {k: v for k, v in tensors.items() if not k.startswith("rank") and not k.startswith(PER_RANK)}
    own.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    return own


def launch(nproc: int, argv: list[str]) -> int:
    """``rnnkit train --nproc N ...``: run ``rnnkit train ...`` (without ``--nproc``) on N
    processes of this machine through torchrun's launcher, on a free port of 127.0.0.1."""
    import socket

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if nproc < 1:
        raise RnnkitError(f"--nproc must be at least 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise RnnkitError("--nproc inside a torchrun-started process: use one or the other")
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per process unless told
    if sys.platform.startswith("linux"):  # one machine: the loopback interface
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    args = ["--nnodes=1", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1", f"--master-port={port}"]
    import logging

    # torchrun logs a failed child at ERROR level: the child's own one-line error says it already
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun([*args, "-m", "rnnkit", *rest])
    except ChildFailedError as err:
        codes = {f.exitcode for f in err.failures.values()}
        if 2 in codes:  # that process printed its one-line error; the launcher stopped the others
            return 2
        failures = ", ".join(f"rank {r} exit {f.exitcode}" for r, f in sorted(err.failures.items()))
        raise RnnkitError(f"a training process failed ({failures})") from None
    return 0
