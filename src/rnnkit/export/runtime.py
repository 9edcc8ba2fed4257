"""An exported file under ONNX Runtime from Python: :class:`OnnxModel` (what ``bench/int8.py`` times).

A thin layer over ``onnxruntime.InferenceSession`` that knows rnnkit's inputs and outputs
(read from the file's ``rnnkit`` metadata): the initial state, a language model's
log-probabilities with the state carried (from its full or its scoring graph), a tagger's
tags. It takes ids, not text: turning text into ids is the caller's (rnnkit's task objects,
or the README's standalone script).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.export.quantize import require_onnxruntime

THREADS = 2
"""Intra-op threads of a session by default: the cores of the 2-core machines rnnkit is measured on."""

State = tuple[np.ndarray, ...]
"""h (and c for an LSTM), each (D*num_layers, N or 1, H) float32."""


class OnnxModel:
    """A file written by :func:`rnnkit.export.export_onnx` (float32 or int8), ready to run.

    Args:
        model: the file's path, or its bytes.
        threads: ONNX Runtime's intra-op threads (one inter-op thread: the graph is a chain).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        meta: the file's ``rnnkit`` metadata (task, vocabularies, state, configuration).
    """

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int = THREADS) -> None:
        require_onnxruntime()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else os.fspath(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types, one per failure
            where = "the model's bytes" if isinstance(model, bytes) else source
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RnnkitError(f"{where}: ONNX Runtime cannot load it ({first})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "rnnkit" not in props:
            raise RnnkitError("not an ONNX model exported by rnnkit (no 'rnnkit' metadata)")
        self.meta: dict[str, Any] = json.loads(props["rnnkit"])
        self.task: str = self.meta["task"]
        self.state_names: list[str] = self.meta["state"]["names"]
        self.scoring: bool = self.meta.get("graph") == "scores"
        """The file is a language model's scoring graph (``export_onnx(..., scoring=True)``)."""

    def initial_state(self) -> State:
        """The state before a sequence's first token, (D*num_layers, 1, H) each: zeros or the
        learned h_0 (c_0); the graph broadcasts it over the batch."""
        state = self.meta["state"]
        if state["initial"] == "learned":
            return tuple(np.asarray(state[name], np.float32) for name in self.state_names)
        return tuple(np.zeros(state["shape"], np.float32) for _ in self.state_names)

    def run(self, feeds: dict[str, np.ndarray], state: State | None = None) -> dict[str, np.ndarray]:
        """Every output of the graph by name for ``feeds`` and ``state`` (None: a fresh one)."""
        state = self.initial_state() if state is None else state
        feeds = {**feeds, **dict(zip(self.state_names, state))}
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def _final(self, out: dict[str, np.ndarray]) -> State:
        return tuple(out[name.replace("0", "N")] for name in self.state_names)

    def log_probs(self, tokens: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """A language model: log P(next token) (L, N, V) at every step of ``tokens`` (L, N)
        int64, and the state after the last step (feed it back to go on)."""
        self._expect("lm", "log_probs")
        if self.scoring:
            raise RnnkitError(
                "log_probs needs a language model's full graph; this file is its scoring graph "
                "(targets in, their log-probabilities out): use score, or export without scoring"
            )
        out = self.run({"tokens": tokens}, state)
        return out["log_probs"], self._final(out)

    def score(
        self,
        tokens: np.ndarray,
        targets: np.ndarray,
        state: State | None = None,
        lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray, State]:
        """A language model: log P(targets[t, n] | tokens[≤t, n]) of shape (L, N), and the final state.

        A scoring graph computes only the targets' log-probabilities (much less than the full
        distribution) and takes ``lengths`` (N,) of a padded batch: 0 past each sequence's end,
        the state after each one's last token (None: every sequence is L long). The full
        graph takes no ``lengths``.
        """
        self._expect("lm", "score")
        if self.scoring:
            if lengths is None:
                lengths = np.full(tokens.shape[1], tokens.shape[0], np.int64)
            out = self.run({"tokens": tokens, "targets": targets, "lengths": lengths}, state)
            return out["target_log_probs"], self._final(out)
        if lengths is not None:
            raise RnnkitError("score: lengths need a scoring graph (export_onnx(..., scoring=True))")
        log_probs, state = self.log_probs(tokens, state)
        return np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0], state

    def tag(
        self,
        words: np.ndarray,
        lengths: np.ndarray,
        chars: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """A tagger: tag ids (L, N) of ``words`` (L, N) int64 of ``lengths`` (N,) (-1 past each
        sentence's end); ``chars`` as (char ids (C, W), word lengths (W,), word index (L, N)) when
        the tagger reads characters."""
        self._expect("tag", "tag")
        feeds = {"words": words, "lengths": lengths}
        if chars is not None:
            feeds.update(zip(("chars", "char_lengths", "word_index"), chars))
        return self.run(feeds)["tags"]

    def _expect(self, task: str, method: str) -> None:
        if self.task != task:
            raise RnnkitError(f"{method} is for a {task!r} model; this file holds a {self.task!r} model")
