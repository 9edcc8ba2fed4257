"""Every reader of user files, fed arbitrary bytes: it parses, or raises rnnkit's one error
type (RnnkitError, a one-line message) — never another exception.

Inputs are drawn by hypothesis from bytes that stress each format (separators, brackets,
tabs, digits, invalid UTF-8, BOMs, huge numbers), mixed with mutations of a valid file.
CI runs ``FUZZ_EXAMPLES`` (default 60) inputs per reader; set the environment variable
higher for a longer hunt. Every read runs bounded (:func:`bounded`): a reader that hangs
(past 10 s) or grows its memory without bound (past 1 GiB more address space) fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch

try:
    import resource
except ImportError:  # not on Windows: the time bound still holds
    resource = None
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.config import load_config
from rnnkit.data.conll import read_conll2003, read_conllu, read_raw
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.sst import read_sentences, read_sst
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

VALID = {
    "conllu": "# sent_id = 1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n"
    "2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_\n2.1\tx\tx\tX\t_\t_\t_\t_\t0:x\t_\n\n",
    "conll2003": "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n",
    "sst": "(3 (2 It) (4 (2 's) (3 great)))\n(1 (1 bad) (2 .))\n",
    "toml": 'task = "tag"\n[model]\ncell = "gru"\nhidden_size = 16\n[train]\nlr = 0.5\n',
    "text": "the cat sat on the mat\na dog ran\n",
}
PIECES = [b"\t", b"\n", b" ", b"(", b")", b"_", b"-", b"#", b"=", b"[", b"]", b'"', b".", b"0", b"9", b"\xff"]
PIECES += [b"\xef\xbb\xbf", b"\r\n", b"B-", b"I-", b"O", b"1-2", b"3.1", b"99999999999999999999", b"\x00"]


def fuzzed(kind: str):
    """Bytes near a valid ``kind`` file: random pieces, or the valid file cut, spliced and mutated."""
    valid = VALID[kind].encode()
    pieces = st.lists(st.sampled_from(PIECES) | st.binary(max_size=8), max_size=40).map(b"".join)

    @st.composite
    def mutated(draw):
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
            if action == "cut":
                data = data[:at]
            elif action == "delete":
                del data[at : at + draw(st.integers(1, 5))]
            else:
                piece = draw(st.sampled_from(PIECES))
                data[at : at + (len(piece) if action == "replace" else 0)] = piece
        return bytes(data)

    return pieces | mutated()


@contextlib.contextmanager
def bounded(seconds: int = 10, megabytes: int = 1024):
    """Run the block with at most ``megabytes`` more address space than now (RLIMIT_AS:
    growing past it raises MemoryError) and ``seconds`` of time (SIGALRM: TimeoutError)."""
    limits = None
    if resource is not None and Path("/proc/self/status").exists():
        status = Path("/proc/self/status").read_text()
        used = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
        limits = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (used + (megabytes << 20), limits[1]))

    def on_alarm(signum, frame):
        raise TimeoutError(f"a reader ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if limits is not None:
            resource.setrlimit(resource.RLIMIT_AS, limits)


def test_the_bounds_trip():
    """The harness itself: unbounded memory and a hang both fail, and the limits go back."""
    with pytest.raises(MemoryError), bounded(megabytes=64):
        bytearray(512 << 20)
    with pytest.raises(TimeoutError), bounded(seconds=1):
        time.sleep(3)
    assert len(bytearray(512 << 20)) == 512 << 20  # the limit was lifted


def parses_or_refuses(read, data: bytes, name: str = "input.txt"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            with bounded():
                read(path)
        except RnnkitError as err:
            assert str(err).strip() and "\n" not in str(err).strip(), repr(str(err))


@FUZZ
@given(fuzzed("conllu"))
def test_conllu(data):
    parses_or_refuses(lambda p: read_conllu(p, "upos"), data, "x.conllu")


@FUZZ
@given(fuzzed("conll2003"))
def test_conll2003(data):
    parses_or_refuses(read_conll2003, data)


@FUZZ
@given(fuzzed("text"))
def test_raw_sentences(data):
    parses_or_refuses(read_raw, data)


@FUZZ
@given(fuzzed("sst"), st.sampled_from([2, 5]))
def test_sst_trees(data, classes):
    parses_or_refuses(lambda p: read_sst(p, classes, phrases=True), data)
    parses_or_refuses(lambda p: read_sentences(p, "auto"), data)


@FUZZ
@given(fuzzed("toml"))
def test_toml_config(data):
    parses_or_refuses(load_config, data, "run.toml")


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=4))
def test_dotted_overrides(overrides):
    try:
        with bounded():
            load_config(None, [f"--{o}" for o in overrides])
    except RnnkitError as err:
        assert "\n" not in str(err).strip()


@FUZZ
@given(fuzzed("text"), st.sampled_from(["word", "char", "symbol"]))
def test_text_corpus(data, level):
    def read(path: Path) -> None:
        (path.parent / "valid.txt").write_bytes(data[::-1])
        path.rename(path.parent / "train.txt")
        load_corpus(locate(path.parent), level)

    parses_or_refuses(read, data)


@FUZZ
@given(st.binary(max_size=200) | st.sampled_from([b"{}", b"[]", b'{"tokens": 3}', b'{"tokens": ["a", 1]}']))
def test_vocabulary_file(data):
    parses_or_refuses(Vocab.load, data, "vocab.json")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt") / "best"
    model = torch.nn.Linear(3, 2)
    save_checkpoint(directory, model, {"epoch": 1}, 1)
    return directory


@FUZZ
@given(st.data())
def test_checkpoint_record_and_weights(checkpoint, data):
    """A checkpoint whose JSON record or safetensors file was damaged: one clear error."""
    record_text = (checkpoint / "checkpoint.json").read_text()
    record = json.loads(record_text)
    weights = (checkpoint / record["weights"]).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "best"
        copy.mkdir()
        if data.draw(st.booleans()):  # damage the record
            damaged = data.draw(fuzzed("text") | st.just(record_text[: len(record_text) // 2].encode()))
            (copy / "checkpoint.json").write_bytes(damaged)
            (copy / record["weights"]).write_bytes(weights)
        else:  # damage the weights, and give the record their new hash (so the loader reads them)
            header = int.from_bytes(weights[:8], "little")
            absurd = data.draw(st.sampled_from([2**63, header + 10**6, 0, 3]))
            body = data.draw(
                st.sampled_from(
                    [
                        absurd.to_bytes(8, "little") + weights[8:],
                        weights[: data.draw(st.integers(0, len(weights) - 1))],
                        weights.replace(b"F32", b"I64"),
                        weights.replace(b"[2,3]", b"[3,3]"),
                    ]
                )
            )
            (copy / record["weights"]).write_bytes(body)
            (copy / "checkpoint.json").write_text(
                json.dumps({**record, "weights_sha256": hashlib.sha256(body).hexdigest()})
            )
        try:
            with bounded():
                load_checkpoint(copy, torch.nn.Linear(3, 2))
        except RnnkitError as err:
            assert "\n" not in str(err).strip()
