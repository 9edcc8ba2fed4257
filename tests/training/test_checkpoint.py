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
    with pytest.raises(RnnkitError, match=r"cannot load|does not match"):
        load_checkpoint(tmp_path, other)


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
