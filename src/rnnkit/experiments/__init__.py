"""The lecture's experiments, each runnable as ``rnnkit experiment NAME`` with a fixed seed.

=============  =====================================================================
``adding``     the adding problem at T = 50..400: tanh Elman, IRNN, GRU, LSTM vs 0.167
``clipping``   an IRNN language model at high learning rates, clipped and not
``long-range`` "Jane ... said hi to ___": accuracy and gradient by distance, all cells
``init``       identity init (IRNN) vs random-init ReLU and tanh Elman on the adding problem
=============  =====================================================================

Each prints a table, writes ``results.json`` and plots to its output directory, and has
three scales: ``tiny`` (seconds: what CI runs, a smoke test whose numbers are not evidence,
and says so), ``small`` (minutes: the default) and ``full`` (the grid of the write-up; hours
on a CPU, run it in the background). A figure below chance or no better than the trivial
baseline is flagged (``!`` in the table, ``flags`` in its row); a number that is not finite
is ``null`` in ``results.json`` (strict JSON) and an ``x`` in the plots, never a stand-in.

Each experiment is one module with ``experiment(seed, scale, device, *, choices...) -> results``
(the choices keyword-only, None by default: ``cells``, ``lengths`` where it takes them), ``draw(folder,
results, caption)`` and the ``FILES`` that draw writes; :data:`EXPERIMENTS` names them (a new
experiment: one new module and one line there). What they share is in :mod:`.common`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from rnnkit.errors import RnnkitError
from rnnkit.experiments import adding, clipping, initialisation, long_range
from rnnkit.experiments.common import TINY_STEPS, check_choices, clear_previous, report_folder, strict_json
from rnnkit.fileio import WriteError, make_dir, stopped_writing, write_text_atomic
from rnnkit.names import SCALES

__all__ = [
    "EXPERIMENTS",
    "FILES",
    "OWNED",
    "RESULTS",
    "SCALES",
    "TINY_STEPS",
    "clear_previous",
    "report_folder",
    "run_experiment",
    "strict_json",
]

EXPERIMENTS: dict[str, ModuleType] = {
    "adding": adding,
    "clipping": clipping,
    "long-range": long_range,
    "init": initialisation,
}
"""name: its module (``experiment``: seed, scale, device -> results; ``draw``: folder, results, title
caption -> its ``FILES``). The names are :data:`rnnkit.names.EXPERIMENTS`, in its order."""

RESULTS = "results.json"
FILES = {name: module.FILES for name, module in EXPERIMENTS.items()}
"""Every file each experiment writes beside results.json."""
OWNED = (RESULTS, *sorted({name for names in FILES.values() for name in names}))
"""What a call may remove from its folder (an earlier call's files, of any experiment): nothing else."""

SMOKE_CAPTION = "(--scale tiny: a smoke test, not evidence)"
TINY_WARNING = (
    "warning: --scale tiny is a smoke test ({steps} training steps per run): it shows that the code runs, "
    "its numbers are not evidence of anything; use --scale small or full"
)


def run_experiment(
    name: str,
    out: str | Path | None = None,
    seed: int = 0,
    scale: str = "small",
    device: str = "cpu",
    as_json: bool = False,
    cells: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
) -> dict:
    """Run experiment ``name`` at ``scale`` on ``device``; results.json and plots go to ``out``.
    ``cells`` (adding, long-range: any of the module's ``CELLS``, the cells after the lecture
    included) and ``lengths`` (adding: the sequence lengths T) replace the scale's choice.

    Before writing, the files any experiment writes are removed from ``out`` (an earlier
    call's), and nothing else. The table goes to stdout, or with ``as_json`` to stderr while
    stdout gets one JSON object: the results (non-finite numbers as null), ``out`` and ``files``.
    Returns the results as written to results.json.
    """
    from rnnkit.training.loop import pick_device

    if name not in EXPERIMENTS:
        raise RnnkitError(f"unknown experiment {name!r}; the experiments are: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise RnnkitError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    module = EXPERIMENTS[name]
    choices = check_choices(name, module, cells, lengths)
    target = pick_device(device)
    out = Path(out or f"rnnkit-experiments/{name}-{scale}")
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        warning = None
        if scale == "tiny":
            warning = TINY_WARNING.format(steps=TINY_STEPS)
            print(warning)
        raw = module.experiment(seed, scale, target, **choices)
        make_dir(out)
        removed, others = clear_previous(out, OWNED)
        results = strict_json(
            {
                "experiment": name,
                "seed": seed,
                "scale": scale,
                "device": str(target),
                "warning": warning,
                **{key: list(value) for key, value in choices.items()},
                **raw,
            }
        )
        written = [RESULTS, *FILES[name]]
        try:
            module.draw(out, raw, "" if warning is None else f"\n{SMOKE_CAPTION}")
            write_text_atomic(out / RESULTS, json.dumps(results, indent=1, allow_nan=False) + "\n")
        except WriteError as err:  # a full disk: say which files this call did write
            raise stopped_writing(err, out, written, f"experiment {name}") from None
        report_folder(out, written, removed, others, "results and plots")
    if as_json:
        print(json.dumps({**results, "out": str(out.resolve()), "files": written}, allow_nan=False))
    return results
