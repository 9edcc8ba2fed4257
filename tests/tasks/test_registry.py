"""Tasks are registered once (issue 17, item 1): one registry, one protocol, a fourth task in one file.

The toy task below is what a new task is: one class (here in this file) and one line in
:data:`rnnkit.tasks.TASKS`; the one training loop trains it through ``fit`` as it is.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.config import RunConfig, load_config
from rnnkit.errors import RnnkitError
from rnnkit.tasks import TASKS, task_kind
from rnnkit.tasks.base import Batches, Data, Step, shuffled_batches
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import fit, make_task

SRC = Path(rnnkit.__file__).parent


@dataclasses.dataclass
class ToyCorpus:
    """Points in the plane, labelled by the sign of x + y."""

    train: list[tuple[list[float], int]]
    valid: list[tuple[list[float], int]] | None
    test: list[tuple[list[float], int]] | None


def toy_points(n: int, seed: int) -> list[tuple[list[float], int]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return [(row.tolist(), int(row.sum() > 0)) for row in x]


class Toy:
    """A fourth task: a linear classifier of points. Everything the loop and the CLI ask of a task."""

    equal_shares = False
    perplexity = False

    def __init__(
        self, config: RunConfig, corpus: ToyCorpus, device: torch.device, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.config, self.corpus, self.device, self.shard = config, corpus, device, shard
        self.model = self.build_model(config, corpus).to(device)
        size = config.train.batch_size
        self.train_batches = [
            list(range(i, min(i + size, len(corpus.train)))) for i in range(0, len(corpus.train), size)
        ]

    @staticmethod
    def build_model(config: RunConfig, corpus: ToyCorpus) -> nn.Module:
        return nn.Linear(2, 2)

    @staticmethod
    def load_corpus(data: Data, config: RunConfig) -> ToyCorpus:
        return ToyCorpus(toy_points(64, 0), toy_points(32, 1), toy_points(32, 2))

    @classmethod
    def resume_corpus(cls, run_dir: Path, data: Data, config: RunConfig) -> ToyCorpus:
        return cls.load_corpus(data, config)

    @staticmethod
    def summary(corpus: ToyCorpus) -> str:
        return f"{len(corpus.train)} training points"

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        config: RunConfig,
        device: torch.device,
        data: str | Path | None = None,
        which: str = "best",
    ) -> Toy:
        task = cls(config, cls.load_corpus({"data": None}, config), device)
        load_checkpoint(run_dir / which, task.model)
        return task

    @staticmethod
    def line(config: RunConfig, split: str, figures: dict[str, float]) -> str:
        return f"{split}: accuracy {figures['accuracy']:.3f}"

    @staticmethod
    def fields(config: RunConfig) -> dict[str, str]:
        return {}

    @staticmethod
    def next_commands(run: str, split: str) -> list[str]:
        return [f"rnnkit evaluate {run} --split {split}", f"rnnkit evaluate {run} --split valid"]

    @staticmethod
    def count_unit(level: str) -> str:
        return "point"

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Batches:
        return shuffled_batches(
            self.corpus.train, self.train_batches, self.config.train.seed, epoch, start, self.shard
        )

    def step(self, batch: list[tuple[list[float], int]], state: Any) -> Step:
        x = torch.tensor([p for p, _ in batch], device=self.device)
        y = torch.tensor([label for _, label in batch], device=self.device)
        nll = nn.functional.cross_entropy(self.model(x), y, reduction="sum")
        return Step(nll / len(batch), nll.item(), len(batch))

    def has_split(self, split: str) -> bool:
        return getattr(self.corpus, split) is not None

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        points = getattr(self.corpus, split)
        x = torch.tensor([p for p, _ in points])
        y = torch.tensor([label for _, label in points])
        logits = self.model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        return {
            "loss": loss,
            "accuracy": (logits.argmax(-1) == y).float().mean().item(),
            "sentences": len(points),
        }

    def report(self, split: str) -> dict[str, Any]:
        return {}

    def selection(self, figures: dict[str, float]) -> float:
        return -figures["accuracy"]

    def running(self, nll: float, count: int) -> dict[str, float]:
        return {"loss": nll / max(count, 1)}

    def describe(self, split: str, figures: dict[str, float]) -> str:
        return self.line(self.config, split, figures)

    def save(self, run_dir: Path) -> None:
        (run_dir / "toy.json").write_text("{}\n")


def test_the_registry_names_the_three_tasks_and_refuses_others_in_one_line():
    assert list(TASKS) == ["lm", "tag", "classify"]
    with pytest.raises(RnnkitError, match=r"task must be one of \['lm', 'tag', 'classify'\], got 'toy'"):
        task_kind("toy")


def test_a_fourth_task_is_one_class_and_one_registry_line_trained_through_fit(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "toy", Toy)  # the one registry line
    settings = ["--train.epochs=3", "--train.batch_size=8", "--train.optimizer=adam", "--train.lr=0.05"]
    config = dataclasses.replace(load_config(None, [*settings, "--train.threads=1"]), task="toy")
    assert isinstance(make_task(config, Toy.load_corpus({"data": None}, config), torch.device("cpu")), Toy)
    run = tmp_path / "run"
    summary = fit(config, Toy.load_corpus({"data": None}, config), run, progress=False)
    assert summary["test"]["accuracy"] > 0.8  # the sign of x + y is linear: learned in 24 steps
    assert (run / "toy.json").exists() and (run / "best").is_dir()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in steps if "epoch" in e] == [1, 2, 3]
    # the trained run comes back through the registry, as any task's does
    again = task_kind("toy").from_run(run, config, torch.device("cpu"))
    assert again.evaluate("test") == pytest.approx(summary["test"])


TASK_NAMES = {"lm", "tag", "classify"}

ALLOWED = {
    "config.py": "config validation: the choices of the task setting",
    "models/config.py": "config validation: which model settings belong to which task",
    "tasks/__init__.py": "the registry",
    "names.py": "the registry's source: each task's name and the module:Class implementing it",
}

PENDING: dict[str, str] = {
    # file: why it still compares a task's name (progress, plots, diagnose and the corpora ask
    # the task's class, the loaded run's kind or a named constant instead)
    "training/memory.py": "issue 18's memory estimate reads each task's step shape from its corpus by "
    "task name; it belongs in each task class (a memory_shape method) next",
}


def task_name_comparisons(tree: ast.AST) -> list[int]:
    """Lines that compare something with a task's name (``task == "lm"``, ``x in ("tag", ...)``),
    or look a task up by name in a dict literal keyed by task names."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = {
                c.value
                for o in operands
                for c in ([o] if isinstance(o, ast.Constant) else getattr(o, "elts", []))
                if isinstance(c, ast.Constant)
            }
            if names & TASK_NAMES:
                lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if keys and keys <= TASK_NAMES and len(keys) > 1:
                lines.append(node.lineno)
    return lines


def test_no_task_name_is_compared_outside_the_registry_and_config_validation():
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in ALLOWED or name in PENDING:
            continue
        lines = task_name_comparisons(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            found[name] = lines
    assert found == {}, f"task names compared outside the registry: {found}"
    source = (SRC / "training/loop.py").read_text(encoding="utf-8")
    assert "config.task ==" not in source  # make_task asks the registry


def test_the_probe_finds_a_comparison():
    assert task_name_comparisons(ast.parse('if config.task == "lm":\n    pass\n')) == [1]
    assert task_name_comparisons(ast.parse('ok = task in ("tag", "classify")\n')) == [1]
    assert task_name_comparisons(ast.parse('f = {"tag": 1, "classify": 2}.get(task)\n')) == [1]
    assert task_name_comparisons(ast.parse('download(task="tag")\n')) == []
