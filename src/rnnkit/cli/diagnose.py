"""``rnnkit diagnose``: watch gradients vanish (or not) in a trained or a fresh model.

On a run directory (its trained model and codec) or a freshly initialised language model
of any cell, over a piece of text, a file, or generated long-range sequences: the t x k
map of ||∂E_t/∂h_k||, its mean by distance, every step Jacobian's norm, for Elman cells
the lecture's bound (β_W β_h)^d against the measured ||∂h_t/∂h_k||, the spectrum of
W_hh, and for gated cells the gates of every unit over time. JSON and PNGs in ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rnnkit.analysis import gradient_flow as gf
from rnnkit.analysis import plots
from rnnkit.cells.elman import ElmanCell
from rnnkit.config import ModelConfig
from rnnkit.data.synthetic import LongRange
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_text, write_text_atomic
from rnnkit.models.config import build_model
from rnnkit.training.run import load

DIAGNOSTICS = ("gradients", "jacobians", "spectrum", "gates", "layers")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="run directory (default: a fresh model, see --cell)")
    fresh = p.add_argument_group("a fresh model (without RUN)")
    fresh.add_argument("--cell", default="elman", choices=("elman", "irnn", "gru", "lstm"))
    fresh.add_argument("--nonlinearity", default="sigmoid", choices=("sigmoid", "tanh", "relu"))
    fresh.add_argument("--hidden", type=int, default=64, help="hidden size (default: 64)")
    fresh.add_argument("--layers", type=int, default=1, help="layers (default: 1)")
    fresh.add_argument("--bidirectional", action="store_true")
    source = p.add_argument_group(
        "input (default: generated long-range sequences, or the run's validation text)"
    )
    source.add_argument("--text", help="the text to run through the model")
    source.add_argument("--file", help="a text file: its first --length tokens")
    source.add_argument("--length", type=int, default=60, help="tokens of input (default: 60)")
    source.add_argument(
        "--sequences", type=int, default=8, help="generated sequences to average (default: 8)"
    )
    p.add_argument(
        "--what",
        default=None,
        help=f"comma-separated, from {', '.join(DIAGNOSTICS)} (default: all that apply to the cell)",
    )
    p.add_argument(
        "--distances",
        default="1,5,10,20,50",
        help="distances d to report ||∂E_t/∂h_(t-d)|| at (default: 1,5,10,20,50, those the input allows)",
    )
    p.add_argument("--layer", type=int, default=None, help="layer to observe (default: the last)")
    p.add_argument("--direction", type=int, default=0, choices=(0, 1), help="1: the backward direction")
    p.add_argument(
        "--out", default=None, help="output directory (default: RUN/diagnose or ./rnnkit-diagnose)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the JSON summary")


def diagnose(args: argparse.Namespace) -> int:
    model, tokens, describe, codec = _model_and_tokens(args)
    rnn = model.rnn
    layer = rnn.num_layers - 1 if args.layer is None else args.layer
    if not 0 <= layer < rnn.num_layers:
        raise RnnkitError(f"--layer must be in [0, {rnn.num_layers - 1}], got {layer}")
    if args.direction >= rnn.num_directions:
        raise RnnkitError("--direction 1 needs a bidirectional model")
    index = layer * rnn.num_directions + args.direction
    cell = rnn.cells[index]
    gated = hasattr(cell, "gate_values")
    applicable = [d for d in DIAGNOSTICS if d != "gates" or gated]
    wanted = applicable if args.what is None else [w.strip() for w in args.what.split(",") if w.strip()]
    for w in wanted:
        if w not in applicable:
            raise RnnkitError(
                f"--what {w}: not a diagnostic of {type(cell).__name__}; possible: {', '.join(applicable)}"
            )
    out = Path(args.out or (Path(args.run) / "diagnose" if args.run else "rnnkit-diagnose"))
    out.mkdir(parents=True, exist_ok=True)
    tr = gf.trace(model, tokens, index)
    T = tr.steps
    distances = _distances(args.distances, T, explicit=args.distances != "1,5,10,20,50")
    report: dict = {"model": describe, "layer": layer, "direction": args.direction, "steps": T}
    report["sequences"] = int(tokens.shape[1])
    if codec is not None:
        report["input"] = codec(tokens[:, 0])
    name = f"{type(cell).__name__} layer {layer}" + (" (backward)" if args.direction else "")
    if "gradients" in wanted:
        G = gf.gradient_matrix(tr)
        curve = gf.by_distance(G)
        report["gradient_by_distance"] = curve.tolist()
        report["gradient_at"] = {str(d): curve[d] for d in distances}
        plots.heatmap(
            G, out / "gradient_map.png", "k (step of h_k)", "t (step of E_t)", f"log10 ||∂E_t/∂h_k||: {name}"
        )
        plots.curves(
            {"mean over t of ||∂E_t/∂h_(t-d)||": (list(range(T)), _positive(curve))},
            out / "gradient_by_distance.png",
            "distance d = t - k",
            "gradient norm",
            f"Gradient reaching d steps back: {name}",
            log_y=True,
        )
    if "jacobians" in wanted:
        jacobians = gf.step_jacobians(tr)
        norms = gf.spectral_norms(jacobians)
        products = gf.product_norms(jacobians, T)
        of = "(h, c)" if cell.has_cell_state else "h"
        report["jacobian"] = {
            "of": of,
            "step_norms": norms.tolist(),
            "product_norms_by_distance": products.tolist(),
        }
        series = {f"||∂{of}_t/∂{of}_k|| measured": (list(range(len(products))), _positive(products))}
        extra = None
        bound = gf.elman_bound(tr) if isinstance(cell, ElmanCell) else None
        if bound is not None:
            report["bound"] = bound
            d = np.arange(len(products))
            extra = {f"||∂{of}_t/∂{of}_k|| bound (β_W β_h)^d": (d.tolist(), _positive(bound["product"] ** d))}
        plots.curves(
            series,
            out / "jacobian_products.png",
            "distance d = t - k",
            "spectral norm",
            f"∂{of}_t/∂{of}_k = Π ∂{of}_j/∂{of}_(j-1): {name}"
            + (f"; β_W={bound['beta_W']:.3f}, β_h={bound['beta_h']:.3f}" if bound else ""),
            log_y=True,
            extra=extra,
        )
        plots.curves(
            {f"||∂{of}_j/∂{of}_(j-1)||": (list(range(1, len(norms) + 1)), norms.tolist())},
            out / "jacobian_norms.png",
            "step j",
            "spectral norm",
            f"Step Jacobians: {name}",
        )
    if "spectrum" in wanted:
        report["spectrum"] = gf.recurrent_spectrum(model, index)
    if "gates" in wanted:
        gates = gf.gate_values(tr)
        report["gates"] = {}
        for gate, values in gates.items():
            sat = gf.saturation(values)
            report["gates"][gate] = {
                "mean": values.mean().item(),
                "near_0": float(sat["near_0"].mean()),
                "near_1": float(sat["near_1"].mean()),
                "near_0_per_unit": sat["near_0"].tolist(),
                "near_1_per_unit": sat["near_1"].tolist(),
            }
            plots.heatmap(
                values[:, 0].T.numpy(),
                out / f"gate_{gate}.png",
                "step t",
                "unit",
                f"{gate} gate over time (sequence 1): {name}",
                log=False,
            )
    if "layers" in wanted:
        layers = gf.layer_gradients(model, tokens)
        report["layers"] = layers
        worst = max(layers, key=lambda r: max((g for g in r["gradient"] if np.isfinite(g)), default=0.0))
        broken = [r for r in layers if r["first_nonfinite"] is not None]
        report["explosion"] = {
            "layer": (broken or [worst])[0]["layer"],
            "direction": (broken or [worst])[0]["direction"],
            "step": broken[0]["first_nonfinite"] if broken else worst["peak_step"],
            "nonfinite": bool(broken),
            "gradient": None if broken else worst["gradient"][worst["peak_step"]],
        }
        plots.curves(
            {
                f"layer {r['layer']}" + (" (backward)" if r["direction"] else ""): (
                    list(range(len(r["gradient"]))),
                    _positive(r["gradient"]),
                )
                for r in layers
            },
            out / "layer_gradients.png",
            "step k",
            "||∂E/∂h_k||",
            "Gradient of the whole input's loss at every layer and step",
            log_y=True,
        )
    write_text_atomic(out / "diagnose.json", json.dumps(report, indent=1, allow_nan=True) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        _print_summary(report, out)
    return 0


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


def _positive(values) -> list[float]:
    return [max(float(v), 1e-300) for v in values]


def _model_and_tokens(args):
    generator = torch.Generator().manual_seed(args.seed)
    if args.length < 3:
        raise RnnkitError(f"--length must be at least 3 tokens, got {args.length}")
    if args.run:
        model, vocab, config, codec = load(args.run)
        describe = f"{args.run} ({config.model.cell} {config.model.num_layers}x{config.model.hidden_size})"
        text = args.text
        if text is None and args.file is not None:
            text = read_text(args.file, "text file")
        if text is None:
            raise RnnkitError("give --text or --file: the text to run the trained model on")
        tokens = codec.corpus_tokens(text)[: args.length]
        ids = torch.tensor([vocab.index(t) for t in tokens])[:, None]
        return model, _enough(ids), describe, lambda column: codec.join(vocab.decode(column))
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
    model = build_model(config, len(task.tokens))
    kind = f"elman {args.nonlinearity}" if args.cell == "elman" else args.cell
    describe = f"fresh {kind} {args.layers}x{args.hidden}"
    if args.text is not None or args.file is not None:
        text = args.text if args.text is not None else read_text(args.file, "text file")
        words = text.split()[: args.length]
        unknown = sorted({w for w in words if w not in task.tokens})
        if unknown:
            raise RnnkitError(
                f"a fresh model knows only the generated corpus's words; unknown: {' '.join(unknown[:8])} "
                f"(known: {' '.join(task.tokens)})"
            )
        ids = torch.tensor([task.tokens.index(w) for w in words])[:, None]
        return model, _enough(ids), describe, lambda column: task.text(column)
    distances = torch.randint(LongRange.MIN_DISTANCE, args.length, (args.sequences,), generator=generator)
    tokens, _, _ = task.batch(distances, args.length, generator)
    return model, tokens, describe, lambda column: task.text(column)


def _enough(ids: torch.Tensor) -> torch.Tensor:
    if ids.shape[0] < 3:
        raise RnnkitError(f"the input has {ids.shape[0]} tokens; diagnosing needs at least 3")
    return ids


def _print_summary(report: dict, out: Path) -> None:
    print(f"rnnkit diagnose: {report['model']}, layer {report['layer']}, {report['steps']} steps")
    at = report.get("gradient_at")
    if at:
        print("  mean ||∂E_t/∂h_(t-d)||: " + ", ".join(f"d={d}: {v:.2e}" for d, v in at.items()))
    if "bound" in report:
        b = report["bound"]
        print(
            f"  lecture's bound: β_W = ||W_hh|| = {b['beta_W']:.3f}, β_h = {b['beta_h']:.3f}, "
            f"product {b['product']:.3f}"
        )
    if "jacobian" in report:
        norms, of = report["jacobian"]["step_norms"], report["jacobian"]["of"]
        print(f"  ||∂{of}_j/∂{of}_(j-1)||: mean {np.mean(norms):.3f}, max {np.max(norms):.3f}")
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
    print(f"  wrote {out / 'diagnose.json'} and the plots beside it")
