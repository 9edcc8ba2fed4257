"""The ``rnnkit`` console script: one grammar of verbs; errors in one line, non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

import rnnkit
from rnnkit import names
from rnnkit.errors import RnnkitError, Terminated
from rnnkit.textsafe import printable

Verbs = argparse._SubParsersAction  # what add_subparsers returns (argparse names no public type)

EX_SOFTWARE = 70
"""The exit status of an unexpected exception (sysexits.h: an internal software error)."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line as every other error is (argparse prints the
    usage and the error on two), pointing to ``--help``; each verb's parser is one too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} ({self.prog} --help for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the top level, then each verb's parser from its own function."""
    parser = Parser(
        prog="rnnkit",
        description=(
            "Recurrent neural networks on text, exactly as the CS224N lecture writes them "
            "(Elman/sigmoid RNN, IRNN, GRU, LSTM; deep and bidirectional), and fast."
        ),
        epilog="Run 'rnnkit COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_verb in VERBS:
        add_verb(verbs)
    return parser


def _demo_parser(verbs: Verbs) -> None:
    demo = verbs.add_parser(
        "demo",
        help="see gradients vanish: five cells on the lecture's long-range task (about a minute, CPU)",
        description=(
            "Train sigmoid Elman, tanh Elman, IRNN, GRU and LSTM language models on a generated corpus "
            "where the word at a blank is the name d words earlier (the lecture's 'Jane ... said hi to "
            "___'), print each one's accuracy at d = 5, 20, 50 and the gradient reaching 1, 20, 50 steps "
            "back, check the lecture's claims on these numbers, and write plots, summary.json and "
            "index.html to --out. Needs no data files."
        ),
    )
    demo.add_argument("--out", default="rnnkit-demo", help="output directory (default: ./rnnkit-demo)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per cell (default: 1000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _device_argument(demo, "cpu")
    demo.add_argument(
        "--json",
        action="store_true",
        help="the results as one JSON object on stdout (the table: stderr)",
    )


def _resume_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped"
    )
    train.add_argument(
        "--accept-edits",
        action="store_true",
        help="with --resume: train on with the settings of a hand-edited config.json (the change is "
        "logged; without it an edit is refused); the model's shape, the data, the task, the optimizer "
        "and the batch size cannot change",
    )


def _train_parser(verbs: Verbs) -> None:
    train = verbs.add_parser(
        "train",
        help="train a model (the task comes from the config; lm by default)",
        description=(
            "Train a model on a corpus and write a run directory: config.json, vocab.json, best/ and "
            "last/ checkpoints (safetensors + JSON), metrics.jsonl and summary.json. Settings come from "
            "the defaults, then --config PRESET or FILE.toml, then --section.field=value overrides, e.g. "
            "--model.cell=gru --train.lr=20."
        ),
        epilog=(
            "Every setting, with its default, type and meaning: 'rnnkit config' (or 'rnnkit config PRESET' "
            "for a preset's values). Overrides are --section.field=value or --section.field value."
        ),
    )
    train.add_argument(
        "--data", help="corpus directory, single text file, or named corpus (ptb, tinyshakespeare)"
    )
    train.add_argument("--train", dest="train_file", help="training text file (instead of --data)")
    train.add_argument("--valid", dest="valid_file", help="validation text file")
    train.add_argument("--test", dest="test_file", help="test text file")
    train.add_argument("--out", help="run directory to create")
    _resume_arguments(train)
    train.add_argument(
        "--config", metavar="PRESET|FILE", help="a preset's name (rnnkit presets) or a TOML settings file"
    )
    train.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train data-parallel on N processes of this machine (torch.distributed: gloo on CPUs, "
        "NCCL on GPUs); for several machines start 'torchrun ... -m rnnkit train ...' on each",
    )
    train.add_argument(
        "--device", help="auto, cpu, cuda, cuda:1, ... (default: the config's train.device, auto)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--json", action="store_true", help="the final figures as one JSON line (the log goes to stderr)"
    )


def _evaluate_parser(verbs: Verbs) -> None:
    evaluate = verbs.add_parser(
        "evaluate",
        help="a trained run on a split: perplexity, tagging accuracy/F1 or classification accuracy",
        description=(
            "Evaluate a run's best checkpoint on a split: for language models perplexity (word and "
            "subword) or bits per character/symbol, the split file streamed in constant memory with "
            "the hidden state carried through it; for taggers token accuracy and, for entity tags, "
            "conlleval's precision/recall/F1; for classifiers sentence accuracy."
        ),
    )
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument(
        "--data", help="corpus directory, file or name (default: the corpus the run was trained on)"
    )
    evaluate.add_argument("--split", choices=("valid", "test"), default="test")
    _device_argument(evaluate, "auto")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="taggers and classifiers: per-label precision/recall/F1, the confusion matrix and, for "
        "entity tags, conlleval's report",
    )
    evaluate.add_argument(
        "--confusion", metavar="PNG", help="taggers and classifiers: draw the confusion matrix"
    )
    from rnnkit.cli.adapt import add_adapt_options  # light: no torch

    add_adapt_options(evaluate, streamed=False)


def _generate_parser(verbs: Verbs) -> None:
    generate = verbs.add_parser(
        "generate",
        help="sample text from a trained language model",
        description="Sample continuations of a prompt from a run's best checkpoint.",
    )
    generate.add_argument("run", help="run directory")
    generate.add_argument("--prompt", default="", help="text to continue (default: a new sentence)")
    generate.add_argument("--num", type=int, default=1, help="number of samples (default: 1)")
    generate.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="tokens per sample at most (default: 50 words or subwords, 400 characters)",
    )
    generate.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default: 1.0)")
    generate.add_argument("--top-k", type=int, default=None, help="sample among the k most probable tokens")
    generate.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling: smallest set of mass p"
    )
    generate.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    generate.add_argument("--no-stop", action="store_true", help="do not stop at the end of a sentence")
    generate.add_argument(
        "--stop",
        action="append",
        metavar="TOKEN",
        help="also end a sample after this token, kept (e.g. --stop . where <eos> ends a paragraph); repeat "
        "for several",
    )
    generate.add_argument("--no-unk", action="store_true", help="never sample <unk>")
    _device_argument(generate, "auto")
    _quantize_argument(generate)
    generate.add_argument("--json", action="store_true", help="machine-readable output")


def _score_parser(verbs: Verbs) -> None:
    score = verbs.add_parser(
        "score",
        help="log-probability, perplexity and per-token surprisal of each line of a file",
        description="Score every line of FILE (- for standard input) as a sentence under a run's model.",
    )
    score.add_argument("run", help="run directory")
    score.add_argument("file", help="text file, one sentence a line, or - for standard input")
    _device_argument(score, "auto")
    _quantize_argument(score)
    score.add_argument("--json", action="store_true", help="one JSON object a line")
    score.add_argument(
        "--batch-size", type=int, default=64, help="lines scored together (default: 64; 1: one at a time)"
    )
    from rnnkit.cli.adapt import add_adapt_options  # light: no torch

    add_adapt_options(score, streamed=True)


def _next_parser(verbs: Verbs) -> None:
    next_ = verbs.add_parser(
        "next",
        help="the most probable next tokens after a prefix",
        description="Print the top-k next-token distribution after PREFIX.",
    )
    next_.add_argument("run", help="run directory")
    next_.add_argument("prefix", help="the text so far")
    next_.add_argument("-k", "--top-k", dest="k", type=int, default=10, help="how many tokens (default: 10)")
    _device_argument(next_, "auto")
    _quantize_argument(next_)
    next_.add_argument("--json", action="store_true", help="machine-readable output")


def _tune_adapt_parser(verbs: Verbs) -> None:
    from rnnkit.cli.adapt import tune_parser  # light: no torch

    tune_parser(verbs)


def _predict_parser(verbs: Verbs) -> None:
    predict = verbs.add_parser(
        "predict",
        help="tag or classify a file with a trained tagger or classifier",
        description=(
            "Tag FILE with a tagger's best checkpoint: CoNLL-U comes back as CoNLL-U with only the tag "
            "column replaced (the CoNLL 2018 UD scorer reads it); CoNLL-2003 as its columns plus a "
            "predicted column (conlleval reads it); raw text, one whitespace-tokenised sentence a "
            "line, as word TAB tag lines. Classify FILE with a classifier: SST trees or raw text, one "
            "sentence a line, in; 'class TAB name TAB probability TAB sentence' lines out (--json: "
            "one JSON object a line with every class's probability)."
        ),
    )
    predict.add_argument("run", help="run directory of a tagger or a classifier")
    predict.add_argument("file", help="the file to tag or classify (- for standard input)")
    predict.add_argument(
        "--format",
        default="auto",
        choices=("auto", "conllu", "conll2003", "sst", "text"),
        help="the file's format (default: from its first lines; a warning when its name suggests another)",
    )
    predict.add_argument("--out", default=None, help="output file (default: standard output)")
    predict.add_argument(
        "--max-words",
        type=int,
        default=None,
        help="a sentence of more words is tagged in parts of this many, or classified on its first "
        "this many, with a warning (default: 1000; bounds memory whatever the input)",
    )
    _device_argument(predict, "auto")
    _quantize_argument(predict)
    predict.add_argument("--json", action="store_true", help="one JSON object a line (a sentence each)")


def _diagnose_parser(verbs: Verbs) -> None:
    from rnnkit.cli.diagnose import add_arguments  # light: no torch

    diagnose = verbs.add_parser(
        "diagnose",
        help="gradient flow through time in a trained or fresh model: ||∂E_t/∂h_k||, Jacobians, gates",
    )
    add_arguments(diagnose)


def _experiment_parser(verbs: Verbs) -> None:
    experiment = verbs.add_parser(
        "experiment",
        help="the lecture's experiments: " + ", ".join(names.EXPERIMENTS),
        description=(
            "Run one of the lecture's experiments with a fixed seed: adding (the adding problem, tanh "
            "Elman vs IRNN vs GRU vs LSTM), clipping (an IRNN LM at high learning rates, clipped or "
            "not), long-range (accuracy and gradient by distance for each cell), init (identity vs "
            "random initialisation). --cells adds the cells that came after the lecture (lnlstm, "
            "mingru, minlstm, slstm) to adding and long-range. Prints a table; writes results.json "
            "and plots to --out."
        ),
    )
    experiment.add_argument(
        "name", choices=names.EXPERIMENTS, metavar="NAME", help=", ".join(names.EXPERIMENTS)
    )
    experiment.add_argument(
        "--scale",
        default="small",
        choices=names.SCALES,
        help="tiny (seconds; a smoke test, its numbers mean nothing), small (minutes; default) or full "
        "(the write-up's grid: hours)",
    )
    experiment.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    experiment.add_argument(
        "--out", default=None, help="output directory (default: ./rnnkit-experiments/NAME-SCALE)"
    )
    experiment.add_argument(
        "--cells",
        type=_name_list,
        metavar="A,B,...",
        help="adding and long-range: which cells to run (default: the lecture's; also lnlstm, mingru, "
        "minlstm, slstm)",
    )
    experiment.add_argument(
        "--lengths",
        type=_int_list,
        metavar="T,T,...",
        help="adding: the sequence lengths T (default: the scale's: 50,100 small, 50,100,200,400 full)",
    )
    _device_argument(experiment, "cpu")
    experiment.add_argument("--json", action="store_true", help="the results as one JSON object on stdout")


def _presets_parser(verbs: Verbs) -> None:
    from rnnkit.cli import settings  # light: no torch

    presets = verbs.add_parser(
        "presets",
        help="list the shipped run presets: what each is, the figure it reached, the time it took",
        description=(
            "List the run presets shipped with rnnkit, one line each: what it is, the figure it reached "
            "and the time it took (from each preset's header). Train one with "
            "'rnnkit train --data DATA --out RUN --config NAME', from any directory."
        ),
    )
    settings.add_presets_arguments(presets)


def _export_parser(verbs: Verbs) -> None:
    export = verbs.add_parser(
        "export",
        help="take a trained model out: a self-contained folder, or an ONNX file (float32 or int8)",
        description=(
            "Write RUN's best checkpoint (or --which last) where nothing else is needed. --format folder "
            "(default): a folder with the weights, settings, vocabulary, the figures reached and on what "
            "data (file names only), which rnnkit.load and every verb read as a run. --format onnx: one "
            ".onnx file for ONNX Runtime, with the recurrent state as explicit inputs and outputs, "
            "dynamic batch and length, the vocabulary in its metadata; --quantize int8 stores int8 "
            "weights (ONNX Runtime's dynamic quantization). Needs: pip install 'rnnkit[export]'."
        ),
    )
    export.add_argument("run", help="a run directory (or an exported folder)")
    export.add_argument("--out", required=True, help="the folder (--format folder) or .onnx file to write")
    export.add_argument("--format", default="folder", choices=("folder", "onnx"), help="default: folder")
    export.add_argument("--quantize", default=None, choices=("int8",), help="onnx only: int8 weights")
    export.add_argument(
        "--scoring",
        action="store_true",
        help="onnx, language models: a scoring graph (tokens, targets, lengths in; target_log_probs "
        "out): faster scoring, no next-token distribution",
    )
    export.add_argument("--which", default="best", choices=("best", "last"), help="the checkpoint (best)")
    export.add_argument("--force", action="store_true", help="replace an earlier export at --out")


def _serve_parser(verbs: Verbs) -> None:
    from rnnkit.cli.serve import serve_parser  # light: no torch, no starlette

    serve_parser(verbs)


def _explore_parser(verbs: Verbs) -> None:
    from rnnkit.cli.explore import explore_parser  # light: no torch, no starlette

    explore_parser(verbs)


def _config_parser(verbs: Verbs) -> None:
    from rnnkit.cli import settings  # light: no torch

    config = verbs.add_parser(
        "config",
        help="list every setting: default (or a preset's value), type, allowed values, meaning",
        description=(
            "Print every setting as section.field with its default (or the value PRESET gives it), its "
            "type or allowed values and a one-line description, generated from the config dataclasses. "
            "Set one with --section.field=value or in a TOML file."
        ),
    )
    settings.add_config_arguments(config)


VERBS: tuple[Callable[[Verbs], None], ...] = (
    _demo_parser,
    _train_parser,
    _evaluate_parser,
    _generate_parser,
    _score_parser,
    _next_parser,
    _tune_adapt_parser,
    _predict_parser,
    _diagnose_parser,
    _experiment_parser,
    _export_parser,
    _serve_parser,
    _explore_parser,
    _presets_parser,
    _config_parser,
)
"""Each verb's parser, in the order ``rnnkit --help`` lists them."""


def _name_list(text: str) -> list[str]:
    """``a,b,c`` as a list of names (no empty one)."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected names separated by commas (lstm,mingru), got {text!r}")
    return items


def _int_list(text: str) -> list[int]:
    """``200,400`` as a list of whole numbers."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, e.g. 200,400; got {text!r}"
        ) from None


def _device_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--device", default=default, help=f"auto, cpu, cuda, ... (default: {default})")


QUANTIZING = ("generate", "score", "next", "predict")
"""The verbs that take ``--quantize int8`` for rnnkit's own inference (``export`` takes it for ONNX)."""


def _quantize_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quantize",
        default=None,
        choices=("int8",),
        help="int8: the model with int8 weights (torch's dynamic quantization of its linear layers and "
        "LSTM/GRU stacks), faster on a CPU, equal to rounding; CPU only",
    )


def _quantize_on_cpu(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error for ``--quantize`` with ``--device`` other than the CPU (or auto, which
    then means the CPU): torch's int8 kernels are the CPU's."""
    device = args.device.lower()
    if args.quantize and device != "auto" and device.split(":")[0] != "cpu":
        parser.error(
            f"--quantize {args.quantize} runs on the CPU (torch's int8 kernels); "
            f"use --device cpu, not --device {args.device}"
        )


def split_overrides(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``--section.field=value`` settings among arguments argparse did not know, and the rest.

    ``--section.field value`` (a space instead of ``=``) is taken as the same setting.
    """
    overrides, unknown = [], []
    items = list(extra)
    i = 0
    while i < len(items):
        arg = items[i]
        name = arg.split("=", 1)[0]
        setting = arg.startswith("--") and ("." in name or name == "--task")
        if setting and "=" not in arg and i + 1 < len(items) and not items[i + 1].startswith("--"):
            overrides.append(f"{arg}={items[i + 1]}")
            i += 2
            continue
        (overrides if setting and "=" in arg else unknown).append(arg)
        i += 1
    return overrides, unknown


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command``, so a usage error shows that command's usage, not the top level's."""
    for action in parser._actions:  # argparse keeps its subcommands in this (private) list only
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command, parser)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``rnnkit score ... | head -1``): stop as Unix tools do,
    silently, with the shell's status for death by SIGPIPE (128 + 13)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    except OSError:
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: a verb's status; any error in one line on stderr, never a traceback.

    An error the user can act on is 2 (the one-line message of an :class:`RnnkitError`, or of
    what escaped: a file that could not be written, memory that ran out); anything else is a
    bug, reported in one line with status 70 (``RNNKIT_TRACEBACK=1`` shows the traceback).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Terminated:
        print(f"{_verb(args)}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{_verb(args)}: interrupted", file=sys.stderr)
        return 130
    except RnnkitError as err:
        return _last_resort(args, "error", str(err), 2)
    except MemoryError:
        return _last_resort(args, "error", _OUT_OF_MEMORY, 2)
    except OSError as err:
        return _last_resort(args, "error", _os_error(err), 2)
    except Exception as err:
        if _out_of_memory(err):
            return _last_resort(args, "error", _OUT_OF_MEMORY, 2)
        what = f"{type(err).__name__}: {err}"
        hint = "a bug: please report it; RNNKIT_TRACEBACK=1 shows the traceback"
        return _last_resort(args, "internal error", f"{what} ({hint})", EX_SOFTWARE)


_OUT_OF_MEMORY = "out of memory; try a smaller model, train.batch_size or train.bptt, or shorter input lines"


def _verb(argv: Sequence[str]) -> str:
    """``rnnkit VERB`` when ``argv``'s first word is a verb, else ``rnnkit``: the messages' prefix."""
    verb = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        known = verb is not None and _subparser(build_parser(), verb).prog.endswith(f" {verb}")
    except Exception:  # the parser itself is what failed: the plain prefix will do
        known = False
    return f"rnnkit {verb}" if known else "rnnkit"


def _last_resort(argv: Sequence[str], kind: str, message: str, status: int) -> int:
    """Print what escaped every handler as one line (and the traceback when asked); ``status``."""
    if os.environ.get("RNNKIT_TRACEBACK") == "1":
        traceback.print_exc()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()  # what the command printed before comes before the error
    print(f"{_verb(argv)}: {kind}: {printable(message)}", file=sys.stderr, flush=True)
    return status


def _os_error(err: OSError) -> str:
    """``file: reason`` (``a -> b: reason`` for a rename) of an OSError that no handler named."""
    reason = err.strerror or str(err) or type(err).__name__
    files = [str(f) for f in (err.filename, err.filename2) if f is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def _out_of_memory(err: BaseException) -> bool:
    """torch's own out-of-memory errors (a RuntimeError on CPUs, OutOfMemoryError on GPUs)."""
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(err).__mro__):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def _main(argv: Sequence[str] | None = None) -> int:
    from rnnkit.cli import malloc

    malloc.tune()  # fewer page faults per training step; the command only, never at import
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides, unknown = split_overrides(extra)
    if unknown or (overrides and args.command != "train"):
        what = shlex.join(unknown or overrides)
        hint = "" if unknown or args.command is None else " (--section.field=value settings are for train)"
        _subparser(parser, args.command).error(f"unrecognized arguments: {what}{hint}")
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in QUANTIZING:
        _quantize_on_cpu(_subparser(parser, args.command), args)
    if args.command == "train" and args.device:
        overrides.append(f"--train.device={args.device}")
    try:
        if args.command == "demo":
            from rnnkit.cli.demo import run_demo

            return run_demo(
                out=args.out, seed=args.seed, steps=args.steps, device=args.device, as_json=args.json
            )
        if args.command == "train" and args.nproc is not None:
            from rnnkit.cli.checks import between

            most = 4 * (os.cpu_count() or 1)
            between("--nproc", args.nproc, 1, most, "4 per CPU here; each process holds the model")
            from rnnkit.training.distributed import launch  # torch: after the check

            return launch(args.nproc, list(sys.argv[1:] if argv is None else argv))
        if args.command == "train":
            from rnnkit.cli.train import train

            return train(args, overrides)
        if args.command == "experiment":
            from rnnkit.experiments import run_experiment

            run_experiment(
                args.name,
                args.out,
                args.seed,
                args.scale,
                device=args.device,
                as_json=args.json,
                cells=args.cells,
                lengths=args.lengths,
            )
            return 0
        if args.command in ("presets", "config"):
            from rnnkit.cli import settings

            return settings.presets(args) if args.command == "presets" else settings.show_config(args)
        if args.command == "diagnose":
            from rnnkit.cli.diagnose import diagnose

            return diagnose(args)
        if args.command == "tune-adapt":
            from rnnkit.cli.adapt import tune_adapt

            return tune_adapt(args)
        if args.command == "export":
            from rnnkit.cli.commands import export

            return export(args)
        if args.command == "explore":
            from rnnkit.cli.explore import explore

            return explore(args)
        if args.command == "serve":
            from rnnkit.cli.serve import serve

            return serve(args)
        if args.command in ("evaluate", "generate", "score", "next", "predict"):
            from rnnkit.cli import commands

            verb = {"next": commands.next_tokens}.get(args.command) or getattr(commands, args.command)
            return verb(args)
    except RnnkitError as err:
        print(f"rnnkit {args.command}: error: {printable(str(err))}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"rnnkit {args.command}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
