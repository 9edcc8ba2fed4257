"""The step guard: a step whose loss or gradient is not finite, or whose loss spikes, is
not taken; what happens then is ``train.on_nonfinite``'s choice, and the run says where
it went wrong (the parameters, the first module output and its time step)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from rnnkit.errors import RnnkitError

if TYPE_CHECKING:
    from rnnkit.config import TrainConfig
    from rnnkit.tasks.base import Step
    from rnnkit.training.state import TrainState

StepFn = Callable[[Any, Any], "Step"]
"""A task's step (or the same through DistributedDataParallel): ``step(batch, state) -> Step``."""

RECENT = 50
"""How many of the last good steps' losses a spike is measured against."""


def spike(loss: float, recent: list[float], factor: float) -> bool:
    """``loss`` above ``factor`` x the mean of the recent good losses (``factor`` 0: never)."""
    return factor > 0 and bool(recent) and loss > factor * (sum(recent) / len(recent))


class Rollback:
    """The weights and optimizer state before the last update, to undo it
    (``train.on_nonfinite = "reduce"``: the update before a bad step is what led to it).

    Buffers are allocated once and copied into before every update: one more copy of the
    model and its optimizer state in memory, a copy's time per step.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.weights = [p.detach().clone() for p in self.params]
        self.state: dict[int, dict[str, Any]] = {}
        self.saved = False

    def save(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.weights, [p.detach() for p in self.params])
            kept = {}
            for i, p in enumerate(self.params):
                entries = self.optimizer.state.get(p, {})
                old = self.state.get(i, {})
                kept[i] = {
                    k: (old[k].copy_(v) if k in old and old[k].shape == v.shape else v.clone())
                    if isinstance(v, torch.Tensor)
                    else v
                    for k, v in entries.items()
                }
            self.state, self.saved = kept, True

    def state_tensors(self) -> tuple[bool, dict[str, torch.Tensor]]:
        """(whether an update can be undone, its tensors) for a resumable checkpoint."""
        if not self.saved:
            return False, {}
        tensors = {f"rollback.w.{i}": w for i, w in enumerate(self.weights)}
        for i, entries in self.state.items():
            for k, v in entries.items():
                tensors[f"rollback.o.{i}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
        return True, tensors

    def load(self, saved: bool, tensors: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`state_tensors` saved."""
        self.saved = bool(saved)
        if not self.saved:
            return
        with torch.no_grad():
            for i, w in enumerate(self.weights):
                w.copy_(tensors[f"rollback.w.{i}"])
        self.state = {i: {} for i in range(len(self.params))}
        for key, value in tensors.items():
            if key.startswith("rollback.o."):
                _, _, index, name = key.split(".", 3)
                self.state[int(index)][name] = value.to(self.weights[int(index)].device)

    def restore(self) -> bool:
        """Undo the last update; False if there was none to undo."""
        if not self.saved:
            return False
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.params], self.weights)
            for i, p in enumerate(self.params):
                if self.state.get(i):
                    live = self.optimizer.state[p]
                    for k, v in self.state[i].items():
                        if isinstance(v, torch.Tensor) and isinstance(live.get(k), torch.Tensor):
                            live[k].copy_(v)
                        else:
                            live[k] = v.clone() if isinstance(v, torch.Tensor) else v
                else:
                    self.optimizer.state.pop(p, None)
        self.saved = False  # one update back, not two
        return True


def diagnose(
    model: torch.nn.Module, step: StepFn, batch: Any, state: Any, loss: float, norm: float, loss_spike: float
) -> str:
    """Where a bad step went wrong: for a non-finite loss or gradient, the parameters and the
    first module output (:func:`nonfinite_origin`, which re-runs ``step`` on ``batch`` from
    ``state``); for a finite one, that it spiked above ``loss_spike`` x the recent mean."""
    if math.isfinite(loss) and math.isfinite(norm):
        return f"a spike: above {loss_spike} x the recent mean"
    return nonfinite_origin(model, step, batch, state)


def guard(
    state: TrainState,
    t: TrainConfig,
    loss: float,
    norm: float,
    where: str,
    log: Callable[[dict[str, Any]], None],
) -> float:
    """A bad step (non-finite loss or gradient, or a spike; ``where``: :func:`diagnose`): not
    taken. Log it, then do what ``t.on_nonfinite`` says: "skip" it; "reduce": also undo the
    update before it (``state.rollback``) and cut the learning rate by
    ``t.nonfinite_factor`` (kept for the rest of the run); "stop". ``t.max_bad_steps`` bad
    steps in a row (``state.cursor.bad``) stop the run, and so do weights that are no longer
    finite (no skipped step can heal them) unless the undone update brings them back.
    Returns the learning rate to go on with (``state.history.lr``).
    """
    history, bad, rollback = state.history, state.cursor.bad, state.rollback
    what = f"step {history.step}: loss {loss:.4g}, gradient norm {norm:.4g} ({where})"
    entry = {"loss": loss, "grad_norm": norm, "where": where}
    action = "stop" if t.on_nonfinite == "stop" or bad >= t.max_bad_steps else t.on_nonfinite
    undone = action == "reduce" and rollback is not None and rollback.restore()
    broken = [name for name, p in state.model.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        action = "stop"
    log({"step": history.step, "nonfinite": {**entry, "action": action}})
    if broken:
        raise RnnkitError(
            f"{what}: the weights {', '.join(broken[:3])} are not finite, which no skipped step can heal; "
            "resume from the last checkpoint with a lower train.lr or a train.clip_norm"
        )
    if action == "stop":
        reason = "train.on_nonfinite = 'stop'" if t.on_nonfinite == "stop" else f"{bad} such steps in a row"
        raise RnnkitError(f"{what}: stopped ({reason}); lower train.lr or set train.clip_norm")
    if action == "reduce":
        history.lr_factor *= t.nonfinite_factor
        history.lr *= t.nonfinite_factor
    done = "step skipped" + (", the update before it undone" if undone else "")
    done += f", lr now {history.lr:.4g}" if action == "reduce" else ""
    tqdm.write(f"rnnkit: {what}: {done}", file=sys.stderr)
    return history.lr


def nonfinite_origin(model: torch.nn.Module, step: StepFn, batch: Any, state: Any) -> str:
    """Where a non-finite step went wrong: the parameters whose gradient is not finite (or,
    if all are, the largest), and the first module whose output was not finite in a re-run
    of the batch, with the first time step of it."""
    grads = [(name, p.grad.norm().item()) for name, p in model.named_parameters() if p.grad is not None]
    bad = [name for name, n in grads if not math.isfinite(n)]
    parts = []
    if bad:
        more = f" +{len(bad) - 3}" if len(bad) > 3 else ""
        parts.append(f"non-finite gradient in {', '.join(bad[:3])}{more}")
    elif grads:
        name, n = max(grads, key=lambda g: g[1])
        parts.append(f"largest gradient {name}: {n:.3g}")
    first: list[str] = []

    def watch(name: str) -> Callable[[torch.nn.Module, Any, Any], None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if first or not isinstance(out, torch.Tensor) or torch.isfinite(out).all():
                return
            at = ""
            if out.dim() >= 2:  # (L, N, ...): the first time step holding a non-finite value
                rows = (~torch.isfinite(out)).flatten(1).any(1).nonzero()
                at = f" at time step {rows[0].item()}" if len(rows) else ""
            first.append(f"first non-finite output: {name}{at}")

        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules() if n]
    device = next(model.parameters()).device
    try:  # the re-run draws no random numbers the run would have drawn (dropout masks)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            step(batch, state)  # no gradient: the state needs no detaching
    except Exception as err:  # the diagnosis must not hide the fault it reports
        first.append(f"the re-run failed: {type(err).__name__}")
    finally:
        for h in handles:
            h.remove()
    return "; ".join(parts + first)
