"""``rnnkit diagnose``: watch gradients vanish (or not) in a trained or a fresh model.

On a run directory (a language model, a tagger or a classifier) or a freshly initialised
language model of any cell, over a piece of text, a file, the run's validation text, or
generated long-range sequences: the t x k map of ||∂E_t/∂h_k||, its mean by distance
(d = t - k for a forward direction, d = k - t for a backward one, whose gradient flows
toward later steps), every step Jacobian's norm, for Elman cells the lecture's bound
(β_W β_h)^d against the measured ||∂h_t/∂h_k||, for minGRU/minLSTM (whose step Jacobian is
diag(a_t), a_t = 1 - z_t or f'_t) that norm exactly as max over units of ∏ a_s with its bound
a_max^d, the spectrum of W_hh, and for gated cells the gates of every unit over time. JSON
and PNGs in ``--out``, whose earlier diagnose files are removed first (and no others).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit import names
from rnnkit.cli import checks
from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.fileio import (
    WriteError,
    iter_lines,
    make_dir,
    read_json,
    read_text,
    stopped_writing,
    write_text_atomic,
)
from rnnkit.training.rundir import DATA, RunDir

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from rnnkit.analysis.gradient_flow import Loss, Trace
    from rnnkit.inference import ClassifierRun, LanguageModelRun, TaggerRun

# torch, numpy and matplotlib are imported by the functions that use them: building the
# command line (rnnkit --help, argument errors) imports this module and must stay fast.

DIAGNOSTICS = ("gradients", "jacobians", "spectrum", "gates", "layers")
GATES = ("input", "forget", "output", "update", "reset")
FILES = (
    "diagnose.json",
    "gradient_map.png",
    "gradient_by_distance.png",
    "jacobian_products.png",
    "jacobian_norms.png",
    "layer_gradients.png",
    *(f"gate_{gate}.png" for gate in GATES),
)
"""Every file diagnose writes: a call removes these (and only these) from --out first."""
DECAY_FACTORS = {"MinGRUCell": "1 - z_t", "MinLSTMCell": "f'_t"}
"""a_t of the cells whose step Jacobian ∂h_t/∂h_(t-1) is diag(a_t), as the report names it."""
CELL_NAMES = {
    "elman": "Elman",
    "irnn": "IRNN",
    "gru": "GRU",
    "lstm": "LSTM",
    "lnlstm": "LayerNorm LSTM",
    "mingru": "minGRU",
    "minlstm": "minLSTM",
    "slstm": "sLSTM",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run text (or generated sequences) through a trained run (a language model, a tagger or a "
        "classifier) or a fresh language model in float64 and measure ||∂E_t/∂h_k|| at every step k "
        "that E_t reaches (k <= t in a forward direction; k >= t in a backward one, whose gradient "
        "flows toward later steps), every step Jacobian's norm, for Elman cells the lecture's bound "
        "(β_W β_h)^d, for minGRU/minLSTM the exact product of their diagonal step Jacobians "
        "diag(1 - z_t) or diag(f'_t), the spectrum of W_hh, and for gated cells each gate over time. Writes "
        "diagnose.json and PNG plots into --out, replacing those of an earlier call."
    )
    p.add_argument(
        "run",
        nargs="?",
        help="run directory: a language model, a tagger or a classifier (default: a fresh language "
        "model, see --cell)",
    )
    _fresh_arguments(p.add_argument_group("a fresh model (without RUN)"))
    _input_arguments(
        p.add_argument_group(
            "input (default: generated long-range sequences; with RUN the first --length tokens of its "
            "validation split, for a tagger or classifier its first validation sentence of --length "
            "words or more)"
        )
    )
    p.add_argument(
        "--what",
        default=None,
        help=f"comma-separated, from {', '.join(DIAGNOSTICS)} (default: all that apply to the cell)",
    )
    p.add_argument(
        "--distances",
        default="1,5,10,20,50",
        help="distances d to report ||∂E_t/∂h_(t-d)|| at, ||∂E_t/∂h_(t+d)|| in a backward direction "
        "(default: 1,5,10,20,50, those the input allows)",
    )
    p.add_argument("--layer", type=int, default=None, help="layer to observe (default: the last)")
    p.add_argument(
        "--direction",
        type=int,
        default=0,
        choices=(0, 1),
        help="1: the backward direction (its gradient flows toward later steps: d = k - t)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output directory (default: RUN/diagnose or ./rnnkit-diagnose); an earlier call's "
        "diagnose.json and plots there are removed first, nothing else",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        default="cpu",
        help="auto, cpu, cuda, ... (default: cpu; the measurement runs in float64)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON summary (and nothing else)")


def _fresh_arguments(fresh: argparse._ArgumentGroup) -> None:
    """The fresh model's options (without RUN)."""
    fresh.add_argument("--cell", default="elman", choices=names.CELLS)
    fresh.add_argument("--nonlinearity", default="sigmoid", choices=names.NONLINEARITIES)
    fresh.add_argument("--hidden", type=int, default=64, help="hidden size (default: 64)")
    fresh.add_argument("--layers", type=int, default=1, help="layers (default: 1)")
    fresh.add_argument("--bidirectional", action="store_true")


def _input_arguments(source: argparse._ArgumentGroup) -> None:
    """What is run through the model."""
    source.add_argument("--text", help="the text to run through the model")
    source.add_argument("--file", help="a text file: its first --length tokens")
    source.add_argument("--length", type=int, default=60, help="tokens of input (default: 60)")
    source.add_argument(
        "--sequences", type=int, default=8, help="generated sequences to average (default: 8)"
    )


@dataclass
class Subject:
    """What diagnose observes: a model, its input (L, N) and the per-step losses to differentiate.

    ``words`` is the token read at each step when the input is one text (the plots'
    tick labels), None for generated sequences.
    """

    model: nn.Module
    tokens: Tensor
    loss: Loss
    describe: str
    cell: str
    text: str | None = None
    words: list[str] | None = None
    source: str = "generated long-range sequences"
    task: str = "lm"


@dataclass
class Observation:
    """One observed layer and direction of a subject, its trace, and where its plots go.

    Each diagnostic reads it and returns its entries of ``diagnose.json``; :meth:`draw`
    writes a plot into ``out`` and notes its name.
    """

    subject: Subject
    trace: Trace
    layer: int
    index: int
    cell: nn.Module
    out: Path
    distances: list[int]
    written: list[str] = field(default_factory=list)

    @property
    def reverse(self) -> bool:
        """The observed direction is the backward one: E_t's gradient reaches later steps."""
        return self.trace.reverse

    @property
    def title(self) -> str:
        """The plots' name for what is observed: ``Elman (sigmoid), layer 0[, backward direction]``."""
        return f"{self.subject.cell}, layer {self.layer}" + (", backward direction" if self.reverse else "")

    @property
    def distance_axis(self) -> str:
        return "distance d = k - t (backward: toward later steps)" if self.reverse else "distance d = t - k"

    def draw(self, plot, name: str, data, *rest, **options) -> None:
        """``plot(data, out / name, *rest, **options)``, and ``name`` noted as written."""
        plot(data, self.out / name, *rest, **options)
        self.written.append(name)


def diagnose(args: argparse.Namespace) -> int:
    """``rnnkit diagnose``: observe one layer, run each diagnostic wanted, write and print the report."""
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.training.loop import pick_device

    _check_sizes(args)
    device = pick_device(args.device)
    subject = _subject(args, device)
    layer, index = _observed(subject.model.rnn, args)
    cell = subject.model.rnn.cells[index]
    wanted = _wanted(cell, args.what)
    out = Path(args.out or (RunDir(args.run).diagnose if args.run else "rnnkit-diagnose"))
    tr = gf.trace(subject.model, subject.tokens, index, subject.loss)
    distances = _distances(args.distances, tr.steps, explicit=args.distances != "1,5,10,20,50")
    replaced = _clear(out)
    seen = Observation(subject, tr, layer, index, cell, out, distances)
    report = _measured(seen, wanted, _header(seen, args.direction, device), replaced)
    if args.json:
        print(json.dumps(report))
    else:
        _print_summary(report, out)
    return 0


def _measured(seen: Observation, wanted: list[str], report: dict, replaced: list[str]) -> dict:
    """``report`` with each wanted diagnostic's figures, written to ``diagnose.json`` beside
    its plots; on a full disk, one line saying which files this call did write."""
    try:
        for what in DIAGNOSTICS:
            if what in wanted:
                report.update(MEASURES[what](seen))
        report["out"] = str(seen.out)
        report["files"] = ["diagnose.json", *seen.written]
        report["replaced"] = replaced
        write_text_atomic(seen.out / "diagnose.json", json.dumps(report, indent=1, allow_nan=True) + "\n")
    except WriteError as err:
        raise stopped_writing(err, seen.out, FILES, "diagnose") from None
    return report


def _observed(rnn: nn.Module, args: argparse.Namespace) -> tuple[int, int]:
    """The layer that ``--layer`` and ``--direction`` name (default: the last), and its index in rnn.cells."""
    layer = rnn.num_layers - 1 if args.layer is None else args.layer
    if not 0 <= layer < rnn.num_layers:
        raise RnnkitError(f"--layer must be in [0, {rnn.num_layers - 1}], got {layer}")
    if args.direction >= rnn.num_directions:
        raise RnnkitError("--direction 1 needs a bidirectional model")
    return layer, layer * rnn.num_directions + args.direction


def _wanted(cell: nn.Module, what: str | None) -> list[str]:
    """The diagnostics ``--what`` asks for (default: all that apply to ``cell``; gates need gates,
    the spectrum of W_hh needs a W_hh)."""
    applicable = [
        d
        for d in DIAGNOSTICS
        if (d != "gates" or hasattr(cell, "gate_values"))
        and (d != "spectrum" or getattr(cell, "recurrent_weights", True))  # minGRU/minLSTM: no W_hh
    ]
    wanted = applicable if what is None else [w.strip() for w in what.split(",") if w.strip()]
    for w in wanted:
        if w not in applicable:
            raise RnnkitError(
                f"--what {w}: not a diagnostic of {type(cell).__name__}; possible: {', '.join(applicable)}"
            )
    return wanted


def _header(seen: Observation, direction: int, device: torch.device) -> dict:
    """What the report says before any measurement: the model, the layer, the input."""
    subject = seen.subject
    report: dict = {
        "model": subject.describe,
        "task": subject.task,
        "cell": subject.cell,
        "layer": seen.layer,
        "direction": direction,
        "direction_name": "backward" if seen.reverse else "forward",
        "distance": (
            "d = k - t: the backward direction ran from the end, so E_t's gradient reaches the later "
            "steps k = t + d"
            if seen.reverse
            else "d = t - k: E_t's gradient reaches the earlier steps k = t - d"
        ),
        "steps": seen.trace.steps,
        "sequences": int(subject.tokens.shape[1]),
        "source": subject.source,
        "device": str(device),
    }
    if subject.text is not None:
        report["input"] = subject.text
    if subject.words is not None:
        report["step_tokens"] = subject.words
    return report


def _gradients(seen: Observation) -> dict:
    """||∂E_t/∂h_k|| for every t and k (a map) and its mean by distance (a curve)."""
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import plots

    tr, reverse, words = seen.trace, seen.reverse, seen.subject.words
    G = gf.gradient_matrix(tr)
    curve = gf.by_distance(G, reverse)
    found = {
        "gradient_by_distance": _finite_or_none(curve),
        "gradient_at": {str(d): _finite_or_none([curve[d]])[0] for d in seen.distances},
    }
    if len(tr.loss_steps) > 1:  # a classifier's one loss is a single row: its curve says it all
        seen.draw(
            plots.heatmap,
            "gradient_map.png",
            G,
            "k (step of h_k)" + ("; backward: E_t reaches k ≥ t" if reverse else ""),
            "t (step of E_t)",
            f"log10 ||∂E_t/∂h_k||: {seen.title}",
            clabel="log10 ||∂E_t/∂h_k||",
            xtokens=words,
            ytokens=words,
        )
    seen.draw(
        plots.curves,
        "gradient_by_distance.png",
        {
            f"mean over t of ||∂E_t/∂h_(t{'+' if reverse else '-'}d)||": (
                list(range(tr.steps)),
                curve.tolist(),
            )
        },
        seen.distance_axis,
        "gradient norm",
        f"Gradient reaching d steps {'ahead' if reverse else 'back'}: {seen.title}",
        log_y=True,
    )
    return found


def _jacobians(seen: Observation) -> dict:
    """Every step Jacobian's norm, their products by distance and, for Elman cells, the lecture's bound."""
    import numpy as np

    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import plots
    from rnnkit.cells.elman import ElmanCell

    tr, reverse = seen.trace, seen.reverse
    jacobians = gf.step_jacobians(tr)
    norms = gf.spectral_norms(jacobians)
    products = gf.product_norms(jacobians, tr.steps, reverse)
    fields = getattr(tr.previous[0], "_fields", None)  # a named-tuple state: (h, c), (h, c, n, m)
    of = f"({', '.join(fields)})" if fields else "h"
    found: dict = {
        "jacobian": {"of": of, "step_norms": norms.tolist(), "product_norms_by_distance": products.tolist()}
    }
    chain = f"{of}_k/∂{of}_(k+d)" if reverse else f"{of}_t/∂{of}_k"
    series = {f"||∂{chain}|| measured": (list(range(len(products))), products.tolist())}
    extra, styles, note = None, None, ""
    d = np.arange(len(products))
    bound = gf.elman_bound(tr) if isinstance(seen.cell, ElmanCell) else None
    if bound is not None:
        found["bound"] = bound
        extra = {f"||∂{chain}|| bound (β_W β_h)^d": (d.tolist(), (bound["product"] ** d).tolist())}
        note = f"; β_W={bound['beta_W']:.3f}, β_h={bound['beta_h']:.3f}"
    log_a = gf.log_decays(tr)
    step = f"∂{of}_j/∂{of}_(j{'+' if reverse else '-'}1)"
    if log_a is not None:  # minGRU/minLSTM: the step Jacobian is diag(a_j), the product known exactly
        found["decay"], extra, styles, a, note = _exact_decay(seen, log_a, d, reverse)
        step += f" = diag({a.replace('_t', '_j')})"
    seen.draw(
        plots.curves,
        "jacobian_products.png",
        series,
        seen.distance_axis,
        "spectral norm",
        f"Products of step Jacobians {step}: {seen.title}{note}",
        log_y=True,
        extra=extra,
        extra_styles=styles,
    )
    seen.draw(
        plots.curves,
        "jacobian_norms.png",
        {f"||{step}||": (list(range(len(norms))), norms.tolist())},
        "step j",
        "spectral norm",
        f"Step Jacobians: {seen.title}",
        xtokens=seen.subject.words,
    )
    return found


def _exact_decay(seen: Observation, log_a: Any, d: Any, reverse: bool) -> tuple[dict, dict, dict, str, str]:
    """A min cell's exact gradient through time: the report's figures, the plot's two lines
    (the product, a_max^d) with their styles, the name of a_t and the title's note."""
    from rnnkit.analysis import gradient_flow as gf

    a = DECAY_FACTORS.get(type(seen.cell).__name__, "a_t")
    decay = {"a": a, "sequence": 0, **gf.decay_summary(log_a[:, 0], seen.trace.steps, reverse)}
    exact = f"exact: max over units of ∏ {_factor(a)}"
    limit = f"bound a_max^d, a_max = {decay['a_max']:.3f}"
    extra = {
        exact: (d.tolist(), decay["product_by_distance"]),
        limit: (d.tolist(), (decay["a_max"] ** d).tolist()),
    }
    kept = a.replace(" ", "\u00a0")  # no break inside 1 - z_t where the title wraps
    note = f"; {kept}: mean {decay['a_mean']:.3f}, max {decay['a_max']:.3f}"
    return decay, extra, {exact: "--", limit: ":"}, a, note


def _spectrum(seen: Observation) -> dict:
    """Spectral radius and norm of W_hh (per gate block for gated cells)."""
    from rnnkit.analysis import gradient_flow as gf

    return {"spectrum": gf.recurrent_spectrum(seen.subject.model, seen.index)}


def _gates(seen: Observation) -> dict:
    """Each gate of every unit over time (sequence 1), and how often it is near 0 or near 1."""
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import plots

    found: dict = {}
    for gate, values in gf.gate_values(seen.trace).items():
        sat = gf.saturation(values)
        found[gate] = {
            "mean": values.mean().item(),
            "near_0": float(sat["near_0"].mean()),
            "near_1": float(sat["near_1"].mean()),
            "near_0_per_unit": sat["near_0"].tolist(),
            "near_1_per_unit": sat["near_1"].tolist(),
        }
        seen.draw(
            plots.heatmap,
            f"gate_{gate}.png",
            values[:, 0].T.numpy(),
            "step t",
            "unit",
            f"{gate} gate over time (sequence 1): {seen.title}",
            log=False,
            limits=(0.0, 1.0),
            clabel=f"{gate} gate (0 closed, 1 open)",
            xtokens=seen.subject.words,
        )
    return {"gates": found}


def _layers(seen: Observation) -> dict:
    """The whole input's gradient at every layer and step, and where it is largest (or first not finite)."""
    import numpy as np

    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.analysis import plots

    subject = seen.subject
    layers = gf.layer_gradients(subject.model, subject.tokens, subject.loss)
    worst = max(layers, key=lambda r: max((g for g in r["gradient"] if np.isfinite(g)), default=0.0))
    broken = [r for r in layers if r["first_nonfinite"] is not None]
    explosion = {
        "layer": (broken or [worst])[0]["layer"],
        "direction": (broken or [worst])[0]["direction"],
        "step": broken[0]["first_nonfinite"] if broken else worst["peak_step"],
        "nonfinite": bool(broken),
        "gradient": None if broken else worst["gradient"][worst["peak_step"]],
    }
    seen.draw(
        plots.curves,
        "layer_gradients.png",
        {
            f"layer {r['layer']}" + (" (backward)" if r["direction"] else ""): (
                list(range(len(r["gradient"]))),
                r["gradient"],
            )
            for r in layers
        },
        "step k",
        "||∂E/∂h_k||",
        f"Gradient of the whole input's loss at every layer and step: {subject.cell}",
        log_y=True,
        xtokens=subject.words,
    )
    return {"layers": layers, "explosion": explosion}


MEASURES: dict[str, Callable[[Observation], dict]] = {
    "gradients": _gradients,
    "jacobians": _jacobians,
    "spectrum": _spectrum,
    "gates": _gates,
    "layers": _layers,
}
"""Each diagnostic of :data:`DIAGNOSTICS`: what it measures (and draws) on an observation."""


def _check_sizes(args: argparse.Namespace) -> None:
    """The sizes asked for fit: a diagnosis keeps every step's state and gradient in float64."""
    bound = "every step's state and gradient are kept in float64"
    checks.between("--hidden", args.hidden, 1, 4096, bound)
    checks.between("--layers", args.layers, 1, 16, bound)
    checks.between("--sequences", args.sequences, 1, 1024, bound)
    checks.at_most("--length", args.length, 2000, "every E_t is traced back over every step")


def _clear(out: Path) -> list[str]:
    """Make ``out`` and remove an earlier call's files from it (only diagnose's own); their names."""
    if out.exists() and not out.is_dir():
        raise RnnkitError(f"--out {out}: not a directory")
    make_dir(out)
    removed = []
    for name in FILES:
        try:
            if (out / name).exists():
                (out / name).unlink()
                removed.append(name)
        except OSError as err:
            raise RnnkitError(
                f"{out / name}: cannot remove the earlier diagnose file ({err.strerror})"
            ) from None
    return removed


def _finite_or_none(values) -> list[float | None]:
    """Floats for JSON: NaN (no loss reaches that far) as None."""
    import numpy as np

    return [None if np.isnan(v) else float(v) for v in values]


def _distances(text: str, steps: int, explicit: bool) -> list[int]:
    """The distances to report; asked-for ones the input cannot reach are an error."""
    try:
        distances = sorted({int(d) for d in text.split(",") if d.strip()})
    except ValueError:
        raise RnnkitError(f"--distances must be comma-separated integers, got {text!r}") from None
    if any(d < 0 for d in distances):
        raise RnnkitError(f"--distances must be non-negative, got {text!r}")
    too_far = [d for d in distances if d >= steps]
    if too_far and explicit:
        raise RnnkitError(
            f"the input gives {steps} steps, so distances up to {steps - 1}; distance {too_far[-1]} needs "
            f"--length {too_far[-1] + 2} or more"
        )
    return [d for d in distances if d < steps]


def _cell_name(config: ModelConfig) -> str:
    """The cell as a plot title names it: ``Elman (sigmoid)``, ``IRNN (ReLU, W_hh = I)``, ``LSTM``."""
    name = CELL_NAMES.get(config.cell, config.cell)
    if config.cell == "elman":
        return f"{name} ({config.nonlinearity})"
    return f"{name} (ReLU, W_hh = I)" if config.cell == "irnn" else name


def _shape(config: ModelConfig) -> str:
    both = ", bidirectional" if config.bidirectional else ""
    return f"{config.cell} {config.num_layers}x{config.hidden_size}{both}"


def _given_text(args) -> tuple[str | None, str]:
    if args.text is not None:
        return args.text, "--text"
    if args.file is not None:
        return read_text(args.file, "text file"), f"the first {args.length} tokens of {args.file}"
    return None, ""


def _subject(args, device: torch.device) -> Subject:
    if args.length < 3:
        raise RnnkitError(f"--length must be at least 3 tokens, got {args.length}")
    if args.run:
        from rnnkit.inference import ClassifierRun, TaggerRun, load

        trained = load(args.run, device=device)  # any task's run, rebuilt as the Python API does
        build = {TaggerRun: _tagger, ClassifierRun: _classifier}.get(type(trained), _language_model)
        subject = build(args, trained)
        _enough(subject.tokens)
        return subject
    return _fresh(args, device)


def _language_model(args, trained: LanguageModelRun) -> Subject:
    import torch

    from rnnkit.analysis import gradient_flow as gf

    model, vocab, config, codec = trained
    run = trained.run_dir
    text, source = _given_text(args)
    if text is None:
        tokens, source = validation_tokens(run, config, codec, args.length)
    else:
        tokens = codec.corpus_tokens(text)[: args.length]
    ids = _enough(torch.tensor([vocab.index(t) for t in tokens], dtype=torch.long)[:, None])
    read = vocab.decode(ids[:, 0].tolist())  # what the model reads (<unk> for words it does not know)
    return Subject(
        model,
        ids.to(trained.device),
        gf.lm_loss,
        f"{run} ({_shape(config.model)})",
        _cell_name(config.model),
        text=codec.join(read),
        words=[codec.join([t]) for t in read[:-1]],  # step t reads token t and predicts token t + 1
        source=source,
    )


def _recorded(run: Path) -> dict:
    data = read_json(
        RunDir(run).data,
        missing=f"{run}: no {DATA} recording the run's corpus; give --text or --file",
        what="the run's corpus record",
    )
    if not isinstance(data, dict) or not (data.get("data") or data.get("train")):
        raise RnnkitError(f"{RunDir(run).data}: records no corpus; give --text or --file")
    return data


def _unreachable(run: Path, err: RnnkitError) -> RnnkitError:
    return RnnkitError(f"{run}: the run's corpus is not reachable ({err}); give --text or --file")


def validation_tokens(run: Path, config, codec, length: int) -> tuple[list[str], str]:
    """The first ``length`` tokens of the validation split of the corpus a run was trained on."""
    from rnnkit.data.corpora import locate

    data = _recorded(run)
    try:
        files = locate(
            data.get("data"),
            data.get("train"),
            data.get("valid"),
            data.get("test"),
            config.data.valid_fraction,
        )
        if files.valid_fraction is None:
            if files.valid is None:
                raise RnnkitError(f"{files.train}: no validation split")
            tokens: list[str] = []
            for _, line in iter_lines(files.valid, "corpus file"):
                tokens += codec.line_tokens(line)
                if len(tokens) >= length:
                    break
            return tokens[:length], f"the first {length} tokens of the validation split ({files.valid})"
        text = read_text(files.train, "corpus file")
    except RnnkitError as err:
        raise _unreachable(run, err) from None
    cut = 1 - files.valid_fraction  # as load_corpus splits one file: by characters for BPE, else tokens
    if codec.level == "bpe":
        tokens = codec.corpus_tokens(text[int(len(text) * cut) :])
    else:
        everything = codec.corpus_tokens(text)
        tokens = everything[int(len(everything) * cut) :]
    return tokens[:length], f"the first {length} tokens of the validation part of {files.train}"


def _tagger(args, trained: TaggerRun) -> Subject:
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.data.conll import Sentence
    from rnnkit.tasks.tagging import locate_tagged, read_tagged

    task, config, run = trained.task, trained.config, trained.run_dir
    text, source = _given_text(args)
    if text is not None:
        sentence = Sentence(text.split()[: args.length])
    else:
        try:
            fmt, _, valid, _ = locate_tagged(_recorded(run)["data"])
            if valid is None:
                raise RnnkitError("no validation (dev) file")
            sentences = read_tagged(valid, fmt, config.data.column)
        except RnnkitError as err:
            raise _unreachable(run, err) from None
        pick = _pick(sentences, lambda s: len(s.words), args.length)
        sentence = Sentence(pick.words[: args.length], pick.tags[: args.length] if pick.tags else None)
        source = (
            f"the validation sentence at line {pick.line} of {valid}, {len(sentence.words)} words (the "
            f"first of {args.length} words or more, else the longest)"
        )
    try:
        ids, _, char_input, gold = task.tensors([sentence], with_tags=sentence.tags is not None)
    except RnnkitError:  # a tag training never saw: differentiate the tagger's own tags instead
        ids, _, char_input, gold = task.tensors([sentence], with_tags=False)
    return Subject(
        task.model,
        ids,
        gf.tagger_loss(char_input, gold),
        f"{run} (tagger, {_shape(config.model)})",
        _cell_name(config.model),
        text=" ".join(sentence.words),
        words=list(sentence.words),
        source=source + ("; E_t of the gold tags" if gold is not None else "; E_t of the predicted tags"),
        task=config.task,
    )


def _classifier(args, trained: ClassifierRun) -> Subject:
    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.data.sst import read_sst

    task, config, run = trained.task, trained.config, trained.run_dir
    classes = task.corpus.classes
    text, source = _given_text(args)
    label = None
    if text is not None:
        sentence = text.split()[: args.length]
    else:
        dev = Path(str(_recorded(run)["data"])) / "dev.txt"
        try:
            examples = read_sst(dev, classes)
        except RnnkitError as err:
            raise _unreachable(run, err) from None
        if not examples:
            raise _unreachable(run, RnnkitError(f"{dev}: no sentences"))
        sentence, label = _pick(examples, lambda e: len(e[0]), args.length)
        sentence = sentence[: args.length]
        source = (
            f"a validation sentence of {dev}, {len(sentence)} words (the first of {args.length} words "
            "or more, else the longest)"
        )
    ids, _, labels = task.tensors([(sentence, label or 0)])
    return Subject(
        task.model,
        ids,
        gf.classifier_loss(labels if label is not None else None),
        f"{run} (classifier, {_shape(config.model)}, {config.model.pooling} pooling)",
        _cell_name(config.model),
        text=" ".join(sentence),
        words=list(sentence),
        source=source + ("; E of the gold class" if label is not None else "; E of the predicted class"),
        task=config.task,
    )


def _pick(items: list, length, wanted: int):
    """The first item at least ``wanted`` long, else the longest."""
    if not items:
        raise RnnkitError("the validation split is empty")
    return next((item for item in items if length(item) >= wanted), max(items, key=length))


def _fresh(args, device: torch.device) -> Subject:
    import torch

    from rnnkit.analysis import gradient_flow as gf
    from rnnkit.data.synthetic import LongRange
    from rnnkit.models.config import build_model

    generator = torch.Generator().manual_seed(args.seed)
    task = LongRange()
    options = {"nonlinearity": args.nonlinearity} if args.cell == "elman" else {}
    torch.manual_seed(args.seed)
    config = ModelConfig(
        cell=args.cell,
        embed_size=32,
        hidden_size=args.hidden,
        num_layers=args.layers,
        bidirectional=args.bidirectional,
        **options,
    )
    model = build_model(config, len(task.tokens)).to(device)
    describe = f"fresh {_cell_name(config)} {args.layers}x{args.hidden}" + (
        ", bidirectional" if args.bidirectional else ""
    )
    text, source = _given_text(args)
    if text is not None:
        words = text.split()[: args.length]
        unknown = sorted({w for w in words if w not in task.tokens})
        if unknown:
            raise RnnkitError(
                f"a fresh model knows only the generated corpus's words; unknown: {' '.join(unknown[:8])} "
                f"(known: {' '.join(task.tokens)})"
            )
        ids = _enough(torch.tensor([task.tokens.index(w) for w in words], dtype=torch.long)[:, None])
        return Subject(
            model,
            ids.to(device),
            gf.lm_loss,
            describe,
            _cell_name(config),
            " ".join(words),
            words[:-1],
            source,
        )
    distances = torch.randint(LongRange.MIN_DISTANCE, args.length, (args.sequences,), generator=generator)
    tokens, _, _ = task.batch(distances, args.length, generator)
    source = f"{args.sequences} generated long-range sequences of {args.length} tokens"
    return Subject(
        model,
        tokens.to(device),
        gf.lm_loss,
        describe,
        _cell_name(config),
        task.text(tokens[:, 0]),
        None,
        source,
    )


def _enough(ids: torch.Tensor) -> torch.Tensor:
    if ids.shape[0] < 3:
        raise RnnkitError(f"the input has {ids.shape[0]} tokens; diagnosing needs at least 3")
    return ids


def _print_summary(report: dict, out: Path) -> None:
    import numpy as np

    where = f"layer {report['layer']}" + (", backward direction" if report["direction"] else "")
    print(f"rnnkit diagnose: {report['model']}, {where}, {report['steps']} steps")
    print(f"  input: {report['source']}")
    at = report.get("gradient_at")
    if report["direction"]:
        print("  backward direction: it ran from the end, so E_t's gradient flows to later steps k = t + d")
    if at:
        sign = "+" if report["direction"] else "-"
        print(
            f"  mean ||∂E_t/∂h_(t{sign}d)||: "
            + ", ".join(f"d={d}: " + ("n/a" if v is None else f"{v:.2e}") for d, v in at.items())
        )
    if "bound" in report:
        b = report["bound"]
        print(
            f"  lecture's bound: β_W = ||W_hh|| = {b['beta_W']:.3f}, β_h = {b['beta_h']:.3f}, "
            f"product {b['product']:.3f}"
        )
    if "jacobian" in report:
        norms, of = report["jacobian"]["step_norms"], report["jacobian"]["of"]
        step = f"∂{of}_j/∂{of}_(j{'+' if report['direction'] else '-'}1)"
        print(f"  ||{step}||: mean {np.mean(norms):.3f}, max {np.max(norms):.3f}")
    if "decay" in report:
        _print_decay(report["decay"], report["direction"], report.get("gradient_at") or {})
    for name, s in report.get("spectrum", {}).items():
        label = "W_hh" if name == "W_hh" else f"W_hh, {name} block"
        print(f"  {label}: spectral radius {s['spectral_radius']:.3f}, norm {s['norm']:.3f}")
    for gate, g in report.get("gates", {}).items():
        print(
            f"  {gate} gate: mean {g['mean']:.2f}, near 0 {g['near_0']:.0%} of the time, "
            f"near 1 {g['near_1']:.0%}"
        )
    e = report.get("explosion")
    if e:
        where = f"layer {e['layer']}" + (" (backward)" if e["direction"] else "") + f", time step {e['step']}"
        if e["nonfinite"]:
            print(f"  first non-finite state or gradient: {where}")
        else:
            print(f"  largest ||∂E/∂h_k||: {where}: {e['gradient']:.3g}")
    replaced = f" (an earlier call's {len(report['replaced'])} files removed)" if report["replaced"] else ""
    print(f"  wrote into {out}: {', '.join(report['files'])}{replaced}")


def _factor(a: str) -> str:
    """``a`` as a factor of a product: ``(1 - z_t)``, ``f'_t``."""
    return f"({a})" if " " in a else a


def _print_decay(decay: dict, backward: int, at: dict) -> None:
    """The exact gradient through time of a minGRU/minLSTM: products of its diagonal step Jacobians."""
    a, chain = decay["a"], "∂h_k/∂h_(k+d)" if backward else "∂h_(k+d)/∂h_k"
    products, per_step = decay["product_by_distance"], decay["per_step_by_distance"]
    wanted = [int(d) for d in at if 0 < int(d) < len(products)] or [1, len(products) - 1]
    print(
        f"  step Jacobian diag({a}), so ||{chain}|| = max over units of ∏ {_factor(a)}, exactly: "
        + ", ".join(f"d={d}: {products[d]:.2e}" for d in wanted)
    )
    print("    kept per step over d steps: " + ", ".join(f"d={d}: {per_step[d]:.3f}" for d in wanted))
    slow = decay["slowest_unit"]
    print(
        f"    {a}: mean {decay['a_mean']:.3f}, max {decay['a_max']:.3f} (so ||{chain}|| <= "
        f"{decay['a_max']:.3f}^d); unit {slow['unit']} keeps {slow['per_step']:.3f} per step"
    )
