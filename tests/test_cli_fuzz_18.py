"""The real ``rnnkit`` console script, fuzzed with hostile arguments and inputs (issue 18, item 6).

hypothesis draws invocations over the whole command-line grammar, read from the parser
itself (every verb, every option, its type or choices) and from the settings' declarations
(``rnnkit.config.settings()``: every ``--section.field``, its type, choices and range), with
values meant to break them: 0, negatives, nan, inf, huge (1e308, 2**63), empty, unicode,
control characters, invalid UTF-8; paths that are files, directories, symlink loops,
dangling links, under a file, too long, inside /proc; TOML files with hostile values; and
inputs of a huge line (8 MB), binary bytes, an empty file, a stream with no newline on stdin
(12 MB).

Each invocation runs the console script in a fresh directory (its cwd, HOME and TMPDIR)
under an address-space limit (:data:`MEMORY_LIMIT`) and a time limit, and must end:

* with status 0 or 2, not killed by a signal, never by the limits;
* without "Traceback" anywhere, and, when it fails, with one line on stderr
  (``rnnkit VERB: error: ...``), which is not the last-resort "out of memory";
* having changed no file outside its directory (the shared fixtures, and the repository
  but for its git-ignored directories and the source files people edit meanwhile, are
  compared before and after).

The time limits are an idle machine's, stretched by the load average per CPU. A case
still running at its time limit is a failure, except for verbs whose work the user
sizes (``train``, ``diagnose``, ``demo``, ``experiment``: a valid ``--train.epochs=2**63``
or ``--scale full`` is legitimately long; a bad value is refused before any work, in
seconds), for ``generate`` while it streams output and for ``serve`` and ``explore`` once they
say where they serve: those count as "long".

CI runs :data:`EXAMPLES` cases with a fixed seed; ``CLI_FUZZ_EXAMPLES=N`` runs N random
ones (``CLI_FUZZ_LOG=FILE`` writes every case as a JSON line), e.g.::

    CLI_FUZZ_EXAMPLES=300 CLI_FUZZ_LOG=fuzz.jsonl pytest -q -s tests/test_cli_fuzz_18.py

Every failing case is printed with its command line and stderr, and the test fails with all
of them (hypothesis does not shrink: each try is a process).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from conftest import write_toy_lm_corpus, write_toy_sst, write_toy_treebank
from rnnkit import names
from rnnkit import presets as preset_files
from rnnkit.cli.main import EX_SOFTWARE, build_parser, main
from rnnkit.config import CHOICES, RANGES
from rnnkit.config import settings as all_settings

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30
MEMORY_LIMIT = 2 * GiB
"""RLIMIT_AS of every case. torch's import takes about 0.7 GiB of address space; every verb
ran its tiny case under 1.5 GiB (training, demo, experiment, diagnose, score of a 1 MB line),
at most 0.43 GiB resident. An 8 MB line read or scored in one piece needs more than this."""

EXAMPLES = int(os.environ.get("CLI_FUZZ_EXAMPLES") or 20)
RANDOM = bool(os.environ.get("CLI_FUZZ_EXAMPLES"))
LOG = os.environ.get("CLI_FUZZ_LOG")

TIMEOUT = {"train": 30.0, "diagnose": 30.0, "demo": 15.0, "experiment": 15.0}
"""Seconds a case of each verb may run on an idle machine (others: :data:`DEFAULT_TIMEOUT`),
stretched by the load average per CPU when the machine is busy (:func:`time_limit`)."""
DEFAULT_TIMEOUT = 45.0
LONG_VERBS = {"train", "diagnose", "demo", "experiment"}
SERVER_VERBS = {"serve", "explore"}
"""Verbs that serve until stopped: one still running at its time limit is "long" when it said
where it serves (it started), a failure otherwise."""
"""Verbs whose work the user sizes: a case of theirs that is still running at its limit is
legitimately long (it got past every check), not a failure."""

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1"]
"""Every generated training starts tiny; the drawn settings come after and win."""

HUGE_LINE = 8 * 2**20
ENDLESS = 12 * 2**20
"""Bytes of the one-line input file, and of the newline-free stream fed to stdin: each far
more than a bounded reader holds, each read in a time limit (tagging runs at about 0.4 MB/s)."""


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("rnnkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rnnkit"]


# -- symbolic values, resolved in each case's own directory ------------------------------------


@dataclass(frozen=True)
class Where:
    """A path made for the case: ``kind`` is one of :data:`PLACES` (or ``run:TASK``,
    ``input:NAME``, ``corpus:TASK``, ``toml:N``)."""

    kind: str

    def __str__(self) -> str:
        return f"<{self.kind}>"


PLACES = (
    "new",  # a fresh path in the case directory: what an output option wants
    "missing",
    "dir",
    "file",
    "loop",  # a symlink to itself
    "dangling",
    "under-file",  # a path below a regular file
    "readonly",  # below a directory of mode 0555 (root writes there anyway)
    "proc",  # /proc/rnnkit-fuzz/x: nothing can be created there
    "long-name",  # a 300-byte file name (ENAMETOOLONG)
    "empty",  # the empty string
    "dot",
    "newline-name",
    "unicode-name",
)
READ_ONLY_PLACES = ("dev-null",)
"""Paths drawn only where the command reads (never for an output: an atomic write over
/dev/null would replace it)."""

INPUTS = (
    "huge-line",
    "text",
    "binary",
    "conllu",
    "long-word",
    "sst",
    "controls",
    "empty",
    "bad-utf8",
    "crlf",
    "unicode",
    "many-lines",
)
STDINS = ("none", "text", "binary", "huge-line", "endless")


@dataclass
class Case:
    """One invocation: its arguments (strings and :class:`Where`) and what stdin holds."""

    args: list
    stdin: str = "none"
    tomls: list[str] = field(default_factory=list)

    @property
    def verb(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        shown = shlex.join(a if isinstance(a, str) else str(a) for a in self.args)
        return f"rnnkit {shown}" + ("" if self.stdin == "none" else f"  < stdin:{self.stdin}")


# -- the grammar, from the parser and the settings ---------------------------------------------


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kind: str  # flag, int, float, choice, path, out, device, text
    choices: tuple = ()


@dataclass(frozen=True)
class Verb:
    name: str
    positionals: tuple[tuple[str, object], ...]  # (dest, nargs)
    options: tuple[Option, ...]


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "flag"
    if action.choices:
        return "choice"
    if action.type in (int, float):
        return action.type.__name__
    names_ = f"{action.dest} {action.metavar or ''}".lower()
    help_words = set(re.findall(r"\w+", (action.help or "").lower()))
    if "device" in action.dest:
        return "device"
    if action.dest in ("out", "confusion") or "output" in help_words:
        return "out"
    if any(w in names_ for w in ("file", "dir", "data", "resume", "config")) or help_words & {
        "file",
        "directory",
    }:
        return "path"
    return "text"


def grammar() -> dict[str, Verb]:
    """Every verb with its positionals and options, as ``rnnkit VERB --help`` shows them."""
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for name, sub in verbs.choices.items():
        positionals, options = [], []
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.option_strings:
                positionals.append((action.dest, action.nargs))
            else:
                options.append(
                    Option(tuple(action.option_strings), _kind(action), tuple(action.choices or ()))
                )
        found[name] = Verb(name, tuple(positionals), tuple(options))
    return found


GRAMMAR = grammar()

# -- hostile values ----------------------------------------------------------------------------

NUMBERS = (
    "0", "-1", "-0", "1", "2", "3", "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e309",
    "1e-320", str(2**31), str(2**31 - 1), str(2**32), str(2**63), str(2**64), str(-(2**63)), str(10**100),
    "0.5", "1.5", "-0.5", "0x10", "1_000", " 7", "١٢", "",
)  # fmt: skip
TEXTS = (
    "", " ", "the", "w1 w2 w3", "\n", "\t", "a\nb", "\r", "\x1b[31mred\x1b[0m", "\x07", "\x7f", "\u2028",
    "\u202eevil", "日本語のテキスト", "ünïcödé ☃ 🙂", "\udcff\udcfe", "-", "--", "-x", "--bogus", "=",
    "x" * 5000, "none", "true", "[1, 2]", "{}", "a,b", ",", "../..", "~",
)  # fmt: skip
DEVICES = ("cpu", "auto", "cuda", "cuda:0", "cuda:99", "mps", "cpu:1", "meta", "nosuch", "", "CPU", "cuda:-1")


def _settings_values(name: str, hint: str) -> st.SearchStrategy[str]:
    """Values for the setting ``name``: its choices and range edges, then anything hostile."""
    edges: list[str] = []
    if name in CHOICES:
        edges += [str(c).lower() if isinstance(c, bool) else str(c) for c in CHOICES[name]]
    bounds = RANGES.get(name)
    if bounds is not None:
        for end in (bounds.low, bounds.high):
            if end is not None:
                edges += [repr(end), repr(end - 1), repr(end + 1), repr(end / 2)]
        edges += [repr(v) for v in bounds.also]
    if "bool" in hint:
        edges += ["true", "false", "yes", "1", "0"]
    if "list" in hint:
        edges += ["2000,5000", "5,3", "3,3", "-1,2", ",", "1,", "2,nan", "1," * 200]
    edge = st.sampled_from(edges or ["1"])
    return st.one_of(edge, edge, st.sampled_from(NUMBERS), st.sampled_from(TEXTS))


def chance(draw, one_in: int) -> bool:
    """True about once in ``one_in`` draws: a middle value, as hypothesis favours the ends of
    a range (``integers(0, n) == 0`` would come up far more often than 1 in n+1)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


SETTINGS = [(name, str(f.type)) for name, f in all_settings()]
UNKNOWN_SETTINGS = ["--model.nosuch=1", "--nosection.x=1", "--model.=1", "--.x=1", "--model.hidden_size"]


@st.composite
def overrides(draw) -> list[str]:
    """``--section.field=value`` (or with a space) for settings drawn from every declared one."""
    out: list[str] = []
    for name, hint in draw(st.lists(st.sampled_from(SETTINGS), max_size=3)):
        value = draw(_settings_values(name, hint))
        out += [f"--{name}={value}"] if draw(st.booleans()) or not value else [f"--{name}", value]
    if chance(draw, 10):
        out.append(draw(st.sampled_from(UNKNOWN_SETTINGS)))
    return out


def toml_text(draw) -> str:
    """A TOML settings file with hostile values (or no TOML at all)."""
    lines: dict[str, list[str]] = {}
    for name, hint in draw(st.lists(st.sampled_from(SETTINGS), min_size=1, max_size=3)):
        section, _, key = name.rpartition(".")
        raw = draw(
            st.one_of(
                st.sampled_from(["nan", "inf", "-inf", "0", "-1", "2147483648", "9223372036854775807"]),
                st.sampled_from(
                    ['""', '"\\u0000"', '"\\u001b[31m"', "[1, 2]", "[]", "{a = 1}", "true", "1e308"]
                ),
                _settings_values(name, hint).map(json.dumps),
            )
        )
        lines.setdefault(section, []).append(f"{key} = {raw}")
    text = "".join((f"[{s}]\n" if s else "") + "\n".join(v) + "\n" for s, v in lines.items())
    broken = ["[model\nhidden_size = 8\n", "hidden_size = = 8\n", "\x00\xff\xfe binary", "[model]\n[model]\n"]
    return draw(st.one_of(st.just(text), st.sampled_from(broken)))


def paths(output: bool = False) -> st.SearchStrategy:
    places = PLACES if output else PLACES + READ_ONLY_PLACES
    return st.sampled_from(places).map(Where)


@st.composite
def option_tokens(draw, option: Option) -> list:
    """An option and its value: one the option takes two times in three (so that the other
    arguments' hostile values get past it), else anything."""
    flag = draw(st.sampled_from(option.flags))
    if option.kind == "flag":
        return [flag]
    if flag == "--config":
        sane = st.one_of(st.sampled_from(preset_files.names()), st.just(Where("toml:0")))
    else:
        sane = {
            "int": st.sampled_from(["1", "2", "3", "4"]),
            "float": st.sampled_from(["0.5", "0.9", "1"]),
            "choice": st.sampled_from([str(c) for c in option.choices]),
            "device": st.just("cpu"),
            "path": st.just(Where("input:text")),
            "out": st.just(Where("new")),
            "text": st.just("w1 w2"),
        }[option.kind]
    hostile = chance(draw, 3)
    value = draw(sane) if not hostile else None
    if value is None:
        value = draw(
            {
                "int": st.one_of(st.sampled_from(NUMBERS), st.integers(-3, 6).map(str)),
                "float": st.one_of(st.sampled_from(NUMBERS), st.floats(allow_nan=True).map(repr)),
                "choice": st.one_of(
                    st.sampled_from([str(c) for c in option.choices]), st.sampled_from(TEXTS)
                ),
                "device": st.sampled_from(DEVICES),
                "path": st.one_of(paths(), st.sampled_from(INPUTS).map(lambda n: Where(f"input:{n}"))),
                "out": st.one_of(paths(output=True), st.just(Where("new"))),
                "text": st.one_of(st.sampled_from(TEXTS), st.sampled_from(NUMBERS)),
            }[option.kind]
        )
    if hostile and option.kind in ("path", "out") and chance(draw, 5):
        value = draw(st.sampled_from(TEXTS))
    if isinstance(value, str) and draw(st.booleans()) and flag.startswith("--"):
        return [f"{flag}={value}"]
    return [flag, value]


LM_VERBS = {"evaluate", "generate", "score", "next", "diagnose", "tune-adapt"}


@st.composite
def run_or_path(draw, verb: str = "") -> Where:
    """Three times in four a run, mostly of the task the verb takes (a language model's for
    score ...); else any path or input file."""
    if not chance(draw, 4):
        mine = ["lm"] if verb in LM_VERBS else ["tag", "classify"]
        tasks = [*mine * 3, *(t for t in names.TASKS if t not in mine)]  # hypothesis favours the first
        return Where(f"run:{draw(st.sampled_from(tasks))}")
    return draw(st.one_of(paths(), st.sampled_from(INPUTS).map(lambda n: Where(f"input:{n}"))))


@st.composite
def input_file(draw) -> Where | str:
    """Three times in four one of the inputs, else ``-`` (stdin) or any path."""
    if not chance(draw, 4):
        return Where(f"input:{draw(st.sampled_from(INPUTS))}")
    return draw(st.one_of(st.just("-"), paths()))


def positional(verb: str, dest: str) -> st.SearchStrategy:
    if dest == "run":
        return run_or_path(verb)
    if dest == "file":
        return input_file()
    if dest == "name":
        return st.one_of(st.sampled_from(names.EXPERIMENTS), st.sampled_from(TEXTS))
    if dest == "preset":
        return st.one_of(st.sampled_from(preset_files.names()), st.sampled_from(TEXTS), paths())
    return st.one_of(st.sampled_from(TEXTS), st.sampled_from(NUMBERS), st.just("w1 w2"))


@st.composite
def cases(draw) -> Case:
    verb = GRAMMAR[draw(st.sampled_from(sorted(GRAMMAR)))]
    args: list = [verb.name]
    tomls: list[str] = []
    if verb.name == "train" and chance(draw, 5):
        args += ["--resume", draw(run_or_path(verb.name))]
    elif verb.name == "train":
        task = draw(st.sampled_from(names.TASKS))
        args += ["--data", Where(f"corpus:{task}"), "--out", Where("new"), *TINY, f"--task={task}"]
    for dest, nargs in verb.positionals:
        if nargs == "?" and draw(st.booleans()):
            continue
        if chance(draw, 20):
            continue  # a missing positional
        args.append(draw(positional(verb.name, dest)))
    options = draw(st.lists(st.sampled_from(verb.options), max_size=3, unique=True))
    if verb.name in ("demo", "experiment") and not chance(draw, 4):
        # keep most of these short: their default sizes take minutes (a long case is allowed)
        options = [o for o in options if o.flags[0] not in ("--steps", "--scale")]
        args += ["--steps", "2"] if verb.name == "demo" else ["--scale", "tiny"]
    for option in options:
        args += draw(option_tokens(option))
    if verb.name == "train":
        args += draw(overrides())
    elif chance(draw, 15):
        args += draw(overrides())  # settings given to a verb that takes none
    if chance(draw, 15):
        args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(TEXTS)))  # a stray word
    for i, arg in enumerate(args):
        if isinstance(arg, Where) and arg.kind.startswith("toml:"):
            tomls.append(toml_text(draw))
            args[i] = Where(f"toml:{len(tomls) - 1}")
    return Case(args, draw(st.sampled_from(STDINS)), tomls)


# -- the world the cases read: tiny runs, corpora and inputs, built once ---------------------


def _sst(root: Path) -> Path:
    return write_toy_sst(root)


def _inputs(root: Path, corpora: dict[str, Path]) -> None:
    root.mkdir()
    rng = random.Random(0)
    (root / "text").write_text("w1 w2 w3\nw4 w5\n\nw0 w7 w7 w1\n")
    shutil.copy(corpora["tag"] / "t-ud-test.conllu", root / "conllu")
    shutil.copy(corpora["classify"] / "test.txt", root / "sst")
    (root / "empty").write_bytes(b"")
    (root / "huge-line").write_bytes(b"w1 w2 w3 w4 " * (HUGE_LINE // 12))
    (root / "long-word").write_bytes(b"w" * 2**20 + b"\n")
    (root / "binary").write_bytes(bytes(rng.randrange(256) for _ in range(65536)))
    (root / "bad-utf8").write_bytes(b"w1 w2\nw3 \xff\xfe w4\n\xc3\n")
    (root / "controls").write_text("w1\x00w2\n\x1b[31mw3\x1b[0m\tw4\nw5\u2028w6\r\n\x0c\x0b\n")
    (root / "crlf").write_bytes(b"w1 w2\r\nw3 w4\r\n")
    (root / "unicode").write_text("日本語 テキスト\nünïcödé ☃ 🙂\n\u202eevil w1\n")
    (root / "many-lines").write_text("w1 w2 w3\n" * 200_000)


@dataclass
class World:
    root: Path
    runs: dict[str, Path]
    corpora: dict[str, Path]
    snapshot: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("fuzz-world")
    (root / "lm").mkdir()
    write_toy_lm_corpus(root / "lm", vocab=8, length=6, train=60, valid=10)
    shutil.copy(root / "lm" / "valid.txt", root / "lm" / "test.txt")  # evaluate's default split
    corpora = {
        "lm": root / "lm",
        "tag": write_toy_treebank(root / "treebank"),
        "classify": _sst(root / "sst"),
    }
    runs = {}
    for task, corpus in corpora.items():
        runs[task] = root / "runs" / task
        args = ["train", "--data", str(corpus), "--out", str(runs[task]), *TINY, f"--task={task}"]
        assert main([*args, "--no-progress", "--train.threads=1"]) == 0
    _inputs(root / "inputs", corpora)
    w = World(root, runs, corpora)
    w.snapshot = fingerprint(root)
    return w


# -- one case ----------------------------------------------------------------------------------


def fingerprint(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every file and link under ``root`` with its type, size and modification time, but
    for directories named or placed (relative to ``root``) as in ``skip``."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if d not in skip and os.path.relpath(os.path.join(dirpath, d), root) not in skip
        ]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            seen[os.path.relpath(path, root)] = (
                st_.st_mode,
                0 if os.path.isdir(path) else st_.st_size,
                st_.st_mtime_ns,
            )
    return seen


def _ignored(repo: Path) -> tuple[str, ...]:
    """The repository's git-ignored directories (runs people train in it, caches, the venv)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.rstrip("/") for line in listed.splitlines() if line.endswith("/"))


REPO_SKIP = (".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache", ".mypy_cache")
REPO_SKIP += _ignored(REPO)


def _not_ignored(repo: Path, paths: list[str]) -> list[str]:
    """Those of ``paths`` that git does not ignore (a directory made ignored since the start)."""
    if not paths:
        return paths
    try:
        ignored = subprocess.run(
            ["git", "check-ignore", "--stdin"],
            cwd=repo,
            input="\n".join(paths),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return paths
    return [p for p in paths if p not in set(ignored)]


EDITED = (".py", ".md", ".toml")
"""Files of the repository that people edit while a long fuzz run goes on: left out of its
comparison (what a command could wrongly write there is a run, a plot, a JSON or text file)."""


def changed(before: dict, after: dict, since_ns: int, edited: tuple[str, ...] = ()) -> list[str]:
    """Paths created, removed or modified (at ``since_ns`` or later) between two fingerprints;
    with ``edited``, files only, but for names ending in one of ``edited``."""
    paths = set(before) ^ set(after)
    paths |= {p for p in set(before) & set(after) if before[p] != after[p] and after[p][2] >= since_ns}
    if edited:
        paths = {
            p for p in paths if not p.endswith(edited) and not stat.S_ISDIR((before.get(p) or after[p])[0])
        }
    return sorted(paths)


def _place(kind: str, case_dir: Path, world: World, tomls: list[str]) -> str:
    if kind.startswith("run:"):
        task = kind.partition(":")[2]
        copy = case_dir / f"{task}-run"
        if not copy.exists():
            shutil.copytree(world.runs[task], copy)
        return str(copy)
    if kind.startswith("input:"):
        return str(world.root / "inputs" / kind.partition(":")[2])
    if kind.startswith("corpus:"):
        return str(world.corpora[kind.partition(":")[2]])
    if kind.startswith("toml:"):
        path = case_dir / f"settings-{kind.partition(':')[2]}.toml"
        path.write_bytes(tomls[int(kind.partition(":")[2])].encode("utf-8", "surrogateescape"))
        return str(path)
    made = {
        "new": "new-out",
        "missing": "missing",
        "dir": "adir",
        "file": "afile.txt",
        "loop": "loop",
        "dangling": "dangling",
        "under-file": "afile.txt/x",
        "readonly": "readonly/x",
        "long-name": "n" * 300,
        "newline-name": "new\nline",
        "unicode-name": "ünï cödé ☃",
    }
    fixed = {"proc": "/proc/rnnkit-fuzz/x", "empty": "", "dot": ".", "dev-null": os.devnull}
    if kind in fixed:
        return fixed[kind]
    return str(case_dir / made[kind])


def _prepare(case_dir: Path) -> None:
    (case_dir / "adir").mkdir()
    (case_dir / "afile.txt").write_text("w1 w2\n")
    (case_dir / "loop").symlink_to(case_dir / "loop")
    (case_dir / "dangling").symlink_to(case_dir / "nowhere")
    (case_dir / "readonly").mkdir(mode=0o555)
    (case_dir / "tmp").mkdir()


def time_limit(verb: str) -> float:
    """Seconds ``verb`` may run now: its idle-machine limit times the load per CPU (at least 1)."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return TIMEOUT.get(verb, DEFAULT_TIMEOUT) * max(1.0, load)


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _feed(pipe, kind: str, world: World) -> None:
    """Write stdin's bytes in blocks; stop quietly when the command stops reading."""
    try:
        if kind == "endless":
            block = b"the company said " * 4096
            for _ in range(ENDLESS // len(block)):
                pipe.write(block)
        else:
            source = {"text": "text", "binary": "binary", "huge-line": "huge-line"}[kind]
            with open(world.root / "inputs" / source, "rb") as f:
                shutil.copyfileobj(f, pipe, 2**16)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


@dataclass
class Outcome:
    case: str
    status: int | None  # None: killed at the time limit
    seconds: float
    peak_rss: int
    stderr: str
    problems: list[str]
    long: bool = False


def run_case(case: Case, world: World, scratch: Path) -> Outcome:
    case_dir = Path(tempfile.mkdtemp(dir=scratch, prefix="case-"))
    _prepare(case_dir)
    argv = [a if isinstance(a, str) else _place(a.kind, case_dir, world, case.tomls) for a in case.args]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(case_dir),
        "TMPDIR": str(case_dir / "tmp"),
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "LANG": "C.UTF-8",
    }
    repo_before = fingerprint(REPO, REPO_SKIP)
    timeout = time_limit(case.verb)
    start_ns, start = time.time_ns(), time.monotonic()
    with open(case_dir / ".stdout", "wb") as out, open(case_dir / ".stderr", "wb") as err:
        proc = subprocess.Popen(
            [*console_script(), *(os.fsencode(a) for a in argv)],
            cwd=case_dir,
            env=env,
            stdin=subprocess.DEVNULL if case.stdin == "none" else subprocess.PIPE,
            stdout=out,
            stderr=err,
            preexec_fn=_limits,
            start_new_session=True,
        )
        feeder = None
        if proc.stdin is not None:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, case.stdin, world), daemon=True)
            feeder.start()
        status, peak = None, 0
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, peak = os.waitstatus_to_exitcode(wait_status), usage.ru_maxrss * 1024
                proc.returncode = status
                break
            if time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode, peak = -9, usage.ru_maxrss * 1024
                break
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind (torchrun's workers)
        if feeder is not None:
            feeder.join(timeout=10)
    seconds = time.monotonic() - start
    stdout = (case_dir / ".stdout").read_bytes()
    stderr = (case_dir / ".stderr").read_bytes().decode("utf-8", "replace")
    problems, long = [], False
    if status is None:
        streaming = case.verb == "generate" and len(stdout) > 0
        serving = case.verb in SERVER_VERBS and b"http://" in stdout + stderr.encode()
        if case.verb in LONG_VERBS or streaming or serving:
            long = True
        else:
            problems.append(f"still running after {timeout:.0f} s")
    elif status not in (0, 2):
        problems.append(
            f"exit status {status}" + (" (the last-resort net: a bug)" if status == EX_SOFTWARE else "")
        )
    if "Traceback" in stderr or b"Traceback" in stdout:
        problems.append("a traceback")
    if status not in (0, None):
        lines = stderr.splitlines()
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        elif not (lines[0].startswith("rnnkit") and ": error: " in lines[0]):
            problems.append("stderr is not 'rnnkit VERB: error: ...'")
        if "out of memory" in stderr:
            problems.append("ran out of memory (the last-resort net)")
    outside = changed(world.snapshot, fingerprint(world.root), 0)
    repo_after = fingerprint(REPO, REPO_SKIP)
    outside += [f"repo: {p}" for p in _not_ignored(REPO, changed(repo_before, repo_after, start_ns, EDITED))]
    if outside:
        problems.append(f"changed outside its directory: {outside[:5]}")
    _remove(case_dir)
    return Outcome(str(case), status, round(seconds, 1), peak, stderr[-2000:], problems, long)


def _remove(case_dir: Path) -> None:
    for dirpath, dirnames, _ in os.walk(case_dir):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    shutil.rmtree(case_dir, ignore_errors=True)


# -- the fuzz test -----------------------------------------------------------------------------


def test_the_cli_under_hostile_arguments_and_inputs(world, tmp_path):
    """Generated invocations of every verb end in status 0 or 2, one stderr line on failure,
    no traceback, within the limits, touching nothing outside their own directory."""
    outcomes: list[Outcome] = []
    seen: set[str] = set()
    log = open(LOG, "a", encoding="utf-8") if LOG else None  # noqa: SIM115 (open for the whole run)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    def one(case: Case) -> None:
        assume(str(case) not in seen)  # hypothesis repeats itself; a process per try is dear
        seen.add(str(case))
        outcome = run_case(case, world, tmp_path)
        outcomes.append(outcome)
        verdict = "LONG" if outcome.long else ("FAIL" if outcome.problems else "ok")
        print(f"[{len(outcomes)}] {verdict} {outcome.status} {outcome.seconds}s {outcome.case[:200]}")
        if log is not None:
            log.write(json.dumps(outcome.__dict__) + "\n")
            log.flush()

    try:
        one()
    finally:
        if log is not None:
            log.close()
    failures = [o for o in outcomes if o.problems]
    long = [o for o in outcomes if o.long]
    peak = max((o.peak_rss for o in outcomes), default=0)
    print(
        f"\nCLI fuzz: {len(outcomes)} cases, {len(outcomes) - len(failures) - len(long)} clean, "
        f"{len(long)} long (killed at their limit, allowed), {len(failures)} failures; "
        f"peak RSS {peak / GiB:.2f} GiB"
    )
    report = "\n\n".join(
        f"{o.case}\n  status {o.status}, {o.seconds} s: {'; '.join(o.problems)}\n  stderr: "
        f"{o.stderr[-600:]!r}"
        for o in failures
    )
    assert not failures, f"{len(failures)} of {len(outcomes)} cases failed:\n\n{report}"


# -- usage errors in one line, and the last-resort net --------------------------------------------


def rnnkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*console_script(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["score"], ["rnnkit score: error:", "required: run, file", "(rnnkit score --help for usage)"]),
        (["bogus"], ["rnnkit: error:", "invalid choice: 'bogus'", "(rnnkit --help for usage)"]),
        (["next", "RUN", "w", "--x=\x1b[31m\nsecond"], ["rnnkit next: error:", "\\x1b[31m\\nsecond"]),
        (["generate", "RUN", "--num", "many"], ["rnnkit generate: error:", "--num", "'many'"]),
    ],
)
def test_a_usage_error_is_one_line_pointing_to_help(args, words):
    """argparse printed its usage and then the error: two lines, control characters raw."""
    proc = rnnkit(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def _failing_config(monkeypatch, error: BaseException) -> None:
    from rnnkit.cli import settings as cli_settings

    def show_config(args):
        print("partial output")
        raise error

    monkeypatch.setattr(cli_settings, "show_config", show_config)


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/runs/r/x.json"),
            2,
            "rnnkit config: error: /runs/r/x.json: No space left on device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/a", None, "/b"),
            2,
            "rnnkit config: error: /a -> /b: Permission denied",
        ),
        (MemoryError(), 2, "rnnkit config: error: out of memory; try a smaller"),
        (
            RuntimeError(
                "[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried to allocate 9"
            ),
            2,
            "rnnkit config: error: out of memory",
        ),
        (
            ZeroDivisionError("division by zero\nsecond line"),
            EX_SOFTWARE,
            "rnnkit config: internal error: ZeroDivisionError: division by zero\\nsecond line (a bug: please "
            "report it; RNNKIT_TRACEBACK=1 shows the traceback)",
        ),
    ],
)
def test_what_escapes_every_handler_is_one_line(monkeypatch, capsys, error, status, expected):
    monkeypatch.delenv("RNNKIT_TRACEBACK", raising=False)
    _failing_config(monkeypatch, error)
    assert main(["config"]) == status
    out, err = capsys.readouterr()
    assert out == "partial output\n"
    assert err.startswith(expected), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_rnnkit_traceback_shows_the_traceback_of_a_bug(monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_TRACEBACK", "1")
    _failing_config(monkeypatch, KeyError("oops"))
    assert main(["config"]) == EX_SOFTWARE
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'oops'" in err
    assert err.splitlines()[-1].startswith("rnnkit config: internal error: KeyError: 'oops'")


def test_the_net_holds_in_the_real_console_script(tmp_path):
    """An unexpected exception in a real process: status 70, one line, no traceback."""
    probe = (
        "import sys\n"
        "from rnnkit.cli import main, settings\n"
        "def boom(args):\n"
        "    raise AssertionError('an invariant broke')\n"
        "settings.presets = boom\n"
        "sys.exit(main.main(['presets']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == EX_SOFTWARE
    assert proc.stderr.splitlines() == [
        "rnnkit presets: internal error: AssertionError: an invariant broke (a bug: please report it; "
        "RNNKIT_TRACEBACK=1 shows the traceback)"
    ]


@pytest.mark.parametrize("n", ["0", "-1", str(2**31)])
def test_nproc_outside_what_this_machine_runs_is_refused(n, tmp_path):
    """--nproc 0 trained on one process without a word; 2**31 would have started that many."""
    proc = rnnkit("train", "--nproc", n, "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stderr.startswith("rnnkit train: error: --nproc must be in [1, ")
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()
