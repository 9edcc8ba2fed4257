"""Checkpoints: safetensors + JSON, atomic replacement, corruption and mismatch detected."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(embed_size=8, hidden_size=8, num_layers=1, **kw), vocab_size=12)


def test_round_trip_with_tied_weights(tmp_path):
    a, b = _model(0, tie_weights=True), _model(1, tie_weights=True)
    save_checkpoint(tmp_path, a, {"epoch": 1}, step=10)
    record = load_checkpoint(tmp_path, b)
    assert record["epoch"] == 1
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert b.head.proj.weight is b.embedding.weight


def test_saving_again_replaces_the_weights_file(tmp_path):
    m = _model()
    save_checkpoint(tmp_path, m, {}, step=1)
    save_checkpoint(tmp_path, m, {}, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "model-000000002.safetensors"]


def test_truncated_weights_are_refused(tmp_path):
    save_checkpoint(tmp_path, _model(), {}, step=1)
    weights = next(tmp_path.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RnnkitError, match="sha256 does not match"):
        load_checkpoint(tmp_path, _model())


def test_a_different_architecture_is_refused(tmp_path):
    save_checkpoint(tmp_path, _model(), {}, step=1)
    other = build_model(ModelConfig(embed_size=8, hidden_size=16, num_layers=1), vocab_size=12)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(
        RnnkitError,
        match=r"different model: head.proj.weight is \[12, 8\] in the file, \[12, 16\] in the model",
    ):
        load_checkpoint(tmp_path, other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # nothing copied


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (dict(vocab_size=13), r"embedding.weight is \[12, 8\] in the file, \[13, 8\]"),
        (dict(num_layers=2), r"missing rnn\.\w+_l1"),
        (dict(cell="gru"), r"rnn.weight_hh_l0 is \[32, 8\] in the file, \[24, 8\]"),
    ],
)
def test_what_differs_is_named(tmp_path, other, expected):
    save_checkpoint(tmp_path, _model(), {}, step=1)
    vocab = other.pop("vocab_size", 12)
    model = build_model(ModelConfig(**{"embed_size": 8, "hidden_size": 8, "num_layers": 1, **other}), vocab)
    with pytest.raises(RnnkitError, match=expected):
        load_checkpoint(tmp_path, model)


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.parametrize(
    ("errno_code", "words"),
    [(28, "No space left on device"), (30, "Read-only file system"), (13, "Permission denied")],
)
@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_a_failed_save_leaves_the_previous_checkpoint(
    tmp_path, monkeypatch, errno_code, words, failing_write
):
    """Disk full / read-only / no permission at the weights, the state or the record write."""
    import os

    import rnnkit.fileio as fileio

    a, b = _model(0), _model(1)
    extra = {"x": torch.arange(5.0)}
    save_checkpoint(tmp_path, a, {"epoch": 1}, step=1, extra=extra)
    before = _files(tmp_path)
    calls = {"n": 0}
    real = fileio.os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] == failing_write:
            raise OSError(errno_code, os.strerror(errno_code))
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", failing_fsync)
    with pytest.raises(RnnkitError, match=rf"cannot save the checkpoint of step 2 \({words}\); the previous"):
        save_checkpoint(tmp_path, b, {"epoch": 2}, step=2, extra={"x": torch.zeros(5)})
    assert _files(tmp_path) == before  # nothing half-written left, nothing old lost
    monkeypatch.undo()
    fresh = _model(2)
    assert load_checkpoint(tmp_path, fresh)["epoch"] == 1
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), fresh.state_dict().values()))


def test_saving_twice_at_one_step_never_overwrites_the_live_file(tmp_path, monkeypatch):
    """The second save of a step writes new names: a crash before its record lands leaves
    the first save's files, and its sha256s, untouched."""
    a, b = _model(0), _model(1)
    save_checkpoint(tmp_path, a, {"n": 1}, step=5)
    first = _files(tmp_path)
    import rnnkit.training.checkpoint as checkpoint

    def crash(path, text):
        raise KeyboardInterrupt  # killed between the weights and the record

    monkeypatch.setattr(checkpoint, "write_text_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, b, {"n": 2}, step=5)
    monkeypatch.undo()
    for name, data in first.items():
        assert (tmp_path / name).read_bytes() == data
    assert load_checkpoint(tmp_path, _model(3))["n"] == 1
    save_checkpoint(tmp_path, b, {"n": 3}, step=5)  # and the next save clears what the crash left
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == "checkpoint.json", names
    assert load_checkpoint(tmp_path, _model(3))["n"] == 3


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
    save_checkpoint(tmp_path, _model(), {}, step=1)
    (tmp_path / ".model-000000002.safetensors.abc123.tmp").write_bytes(b"half")
    (tmp_path / "model-000000002.safetensors").write_bytes(b"never pointed to")
    (tmp_path / "notes.txt").write_text("the user's own file stays")
    save_checkpoint(tmp_path, _model(), {}, step=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "model-000000003.safetensors", "notes.txt"]


def test_corrupted_record_and_missing_checkpoint(tmp_path):
    with pytest.raises(RnnkitError, match="no checkpoint here"):
        load_checkpoint(tmp_path, _model())
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(RnnkitError, match="corrupted checkpoint record"):
        load_checkpoint(tmp_path, _model())
    (tmp_path / "checkpoint.json").write_text(json.dumps({"weights": "../../etc/passwd"}))
    with pytest.raises(RnnkitError, match="file name in the checkpoint directory"):
        load_checkpoint(tmp_path, _model())


def test_a_pickle_is_never_unpickled(tmp_path):
    """A pickle whose unpickling would create a file, handed over as the weights."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    name = "model-000000001.safetensors"
    (tmp_path / name).write_bytes(pickle.dumps(Evil()))
    import hashlib

    sha = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    (tmp_path / "checkpoint.json").write_text(json.dumps({"weights": name, "weights_sha256": sha}))
    with pytest.raises(RnnkitError, match="cannot load"):
        load_checkpoint(tmp_path, _model())
    assert not marker.exists()
