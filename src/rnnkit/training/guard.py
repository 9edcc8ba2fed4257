"""The step guard: a step whose loss or gradient is not finite, or whose loss spikes, is
not taken; what happens then is ``train.on_nonfinite``'s choice, and the run says where
it went wrong (the parameters, the first module output and its time step)."""

from __future__ import annotations

import math
import sys

import torch
from tqdm import tqdm

from rnnkit.cells.base import detach_state
from rnnkit.errors import RnnkitError

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

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.weights = [p.detach().clone() for p in self.params]
        self.state: dict[int, dict] = {}
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
                _, _, i, k = key.split(".", 3)
                self.state[int(i)][k] = value.to(self.weights[int(i)].device)

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


def guard(
    task, step, batch, state, loss: float, norm: float, t, history, cursor, log, rollback=None
) -> float:
    """A bad step (non-finite loss or gradient, or a spike): not taken. Say where it went
    wrong, log it, then do what ``train.on_nonfinite`` says: "skip" it; "reduce": also undo
    the update before it and cut the learning rate by ``train.nonfinite_factor`` (kept for
    the rest of the run); "stop". ``train.max_bad_steps`` bad steps in a row stop the run,
    and so do weights that are no longer finite (no skipped step can heal them) unless
    the undone update brings them back. Returns the learning rate to go on with.
    """
    model = task.model
    finite = math.isfinite(loss) and math.isfinite(norm)
    where = (
        nonfinite_origin(model, step, batch, state)
        if not finite
        else f"a spike: above {t.loss_spike} x the recent mean"
    )
    what = f"step {history.step}: loss {loss:.4g}, gradient norm {norm:.4g} ({where})"
    entry = {"loss": loss, "grad_norm": norm, "where": where}
    action = "stop" if t.on_nonfinite == "stop" or cursor.bad >= t.max_bad_steps else t.on_nonfinite
    undone = action == "reduce" and rollback is not None and rollback.restore()
    broken = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        action = "stop"
    log({"step": history.step, "nonfinite": {**entry, "action": action}})
    if broken:
        raise RnnkitError(
            f"{what}: the weights {', '.join(broken[:3])} are not finite, which no skipped step can heal; "
            "resume from the last checkpoint with a lower train.lr or a train.clip_norm"
        )
    if action == "stop":
        reason = (
            "train.on_nonfinite = 'stop'" if t.on_nonfinite == "stop" else f"{cursor.bad} such steps in a row"
        )
        raise RnnkitError(f"{what}: stopped ({reason}); lower train.lr or set train.clip_norm")
    lr = history.lr
    if action == "reduce":
        history.lr_factor *= t.nonfinite_factor
        lr = history.lr = lr * t.nonfinite_factor
    done = "step skipped" + (", the update before it undone" if undone else "")
    done += f", lr now {lr:.4g}" if action == "reduce" else ""
    tqdm.write(f"rnnkit: {what}: {done}", file=sys.stderr)
    return lr


def nonfinite_origin(model: torch.nn.Module, step, batch, state) -> str:
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

    def watch(name):
        def hook(module, args, output):
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
            step(batch, None if state is None else detach_state(state))
    except Exception as err:  # the diagnosis must not hide the fault it reports
        first.append(f"the re-run failed: {type(err).__name__}")
    finally:
        for h in handles:
            h.remove()
    return "; ".join(parts + first)
