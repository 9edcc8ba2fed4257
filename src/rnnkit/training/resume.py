"""Everything exact resume needs, as tensors (safetensors) and plain data (JSON): no pickle.

Optimizer state, the learning-rate history, the data cursor with the carried hidden
state, and every random number generator (Python, NumPy, torch, the window-length
generator, CUDA's) at a window boundary. Restored, training continues bit for bit as
if it had never stopped (on the CPU, with the same thread count).
"""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import torch

from rnnkit.cells.base import LSTMState
from rnnkit.errors import RnnkitError


def capture(
    optimizer: torch.optim.Optimizer, history, cursor, generator: torch.Generator
) -> tuple[dict, dict]:
    """(JSON record, tensors) describing the training state right now."""
    tensors: dict[str, torch.Tensor] = {
        "rng.torch": torch.get_rng_state(),
        "rng.windows": generator.get_state(),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    hidden = cursor.state
    if isinstance(hidden, LSTMState):
        tensors["hidden.h"], tensors["hidden.c"] = hidden.h, hidden.c
    elif hidden is not None:
        tensors["hidden.h"] = hidden
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    record = {
        "history": asdict(history),
        "cursor": {k: v for k, v in asdict(cursor).items() if k != "state"},
        "hidden": "lstm" if isinstance(hidden, LSTMState) else ("h" if hidden is not None else None),
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "rng": {
            "python": [py_version, list(py_state), py_gauss],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        },
        "threads": torch.get_num_threads(),
    }
    return record, tensors


def restore(record: dict, tensors: dict, optimizer, history, cursor, generator, device: torch.device) -> None:
    """Put the state that :func:`capture` saved back into the live objects."""
    try:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(device)
        for index, entries in record["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(entries)
        optimizer.load_state_dict({"state": state, "param_groups": record["optimizer"]["param_groups"]})
        for key, value in record["history"].items():
            setattr(history, key, value)
        for key, value in record["cursor"].items():
            setattr(cursor, key, value)
        kind = record["hidden"]
        if kind == "lstm":
            cursor.state = LSTMState(tensors["hidden.h"].to(device), tensors["hidden.c"].to(device))
        else:
            cursor.state = tensors["hidden.h"].to(device) if kind == "h" else None
        torch.set_num_threads(int(record["threads"]))
        py = record["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npy = record["rng"]["numpy"]
        np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.windows"])
        cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        raise RnnkitError(
            f"the checkpoint's training state is incomplete or does not fit this run ({err})"
        ) from None
