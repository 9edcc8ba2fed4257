"""The float64 probes in a process of their own: ``rnnkit explore``'s inside, units and gradient answers.

Python threads share one interpreter lock. The probe's recording and its gradient sweep are
thousands of small tensor operations driven by a Python loop, and so is the trained model's
answer beside them: run side by side in two threads, each took about twice as long as alone,
and the event loop delivering the answers waited on both (``bench/explore.py``: with threads,
every view's compute on the server 2-2.5x what it is in one thread alone). A
:class:`ProbeProcess` runs an :class:`~rnnkit.explore.compute.Explorer` of the same runs in a
child process (``python -m rnnkit.explore.worker``) and asks it the probe's questions; the
parent keeps the HTTP server, the trained models and the text's own answer.

The protocol is JSON lines on the child's stdin and stdout; nothing is pickled. A request is
``{"method": "inside" | "units" | "gradient", "args": [...]}`` (the Explorer method's
arguments). An answer is one header line, ``{"status": "ok", "compute": ms, "encode": ms}``
followed by the answer's JSON on one line, as the API sends it, or
``{"status": "refused" | "error", "message": "..."}`` (a bad question; an internal error). The
child writes ``{"status": "ready"}`` once its runs are loaded. It ignores Ctrl-C (the parent
stops it) and ends when its stdin closes, so it never outlives the parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from rnnkit.errors import RnnkitError

METHODS = ("inside", "units", "gradient")
"""The Explorer's methods the child answers: those read from the float64 probe."""


@dataclass
class Encoded:
    """An answer as the child encoded it: its JSON, the child's ``compute`` and ``encode`` ms and
    how long the question ``wait`` ed for the child (another question had it)."""

    body: bytes
    compute: float
    encode: float
    wait: float


class ProbeStoppedError(RuntimeError):
    """The child process ended (killed, out of memory): a new one starts for the next question."""


class ProbeProcess:
    """A child process answering the probe's questions about ``runs``, one at a time.

    Made at once (the child loads its runs while the parent loads its own); :meth:`ready`
    waits for it. A question to a child that has died starts a new one; the question that
    found it dead gets :class:`ProbeStoppedError`.
    """

    def __init__(self, runs: list[Any], which: str, device: str, threads: int, precision: str) -> None:
        spec = {"runs": [str(r) for r in runs], "which": which, "device": device}
        spec |= {"threads": threads, "precision": precision}
        self.command = [sys.executable, "-m", "rnnkit.explore.worker", json.dumps(spec)]
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.starts += 1
        self._ready = False

    def ready(self) -> None:
        """Wait until the child has loaded its runs; its one-line error if it could not."""
        with self.lock:
            try:
                self._wait_ready()
            except (OSError, ValueError, ProbeStoppedError) as err:
                if isinstance(err, RnnkitError):
                    raise
                code = None if self.proc is None else self.proc.poll()
                self._kill()
                raise RnnkitError(f"the probe process stopped while loading the runs (exit {code})") from None

    def _wait_ready(self) -> None:
        if self._ready:
            return
        header = self._header()
        if header.get("status") != "ready":
            self.close()
            raise RnnkitError(str(header.get("message", "the probe process did not start")))
        self._ready = True

    def ask(self, method: str, *args: Any) -> Encoded:
        """The child's answer to ``method(*args)``: an :class:`Encoded` answer; a refusal is the
        child's :class:`RnnkitError`, its internal error a RuntimeError."""
        asked = time.perf_counter()
        with self.lock:
            waited = (time.perf_counter() - asked) * 1000
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    print(
                        f"rnnkit explore: the probe process had stopped (exit {self.proc.returncode}); "
                        "starting a new one",
                        file=sys.stderr,
                        flush=True,
                    )
                self._start()
            try:
                self._wait_ready()
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"method": method, "args": list(args)}).encode() + b"\n")
                self.proc.stdin.flush()
                header = self._header()
                status = header.get("status")
                if status == "ok":
                    body = self._line()
                    compute, encode = float(header["compute"]), float(header["encode"])
                    return Encoded(body.rstrip(b"\n"), compute, encode, waited)
            except RnnkitError:  # a new child that could not load the runs: its own line
                raise
            except (OSError, ValueError, ProbeStoppedError) as err:
                self._kill()
                raise ProbeStoppedError(
                    "the probe process stopped (killed?); a new one starts with the next question"
                ) from err
        if status == "refused":
            raise RnnkitError(str(header.get("message", "bad request")))
        raise RuntimeError(str(header.get("message", "the probe process failed")))

    def _line(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.endswith(b"\n"):
            raise ProbeStoppedError("the probe process closed its output")
        return line

    def _header(self) -> dict[str, Any]:
        header = json.loads(self._line())
        if not isinstance(header, dict):
            raise ValueError("a header is a JSON object")
        return header

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        """Stop the child: its stdin closed (it ends its loop), killed if it does not within 5 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def _send(out: IO[bytes], header: dict[str, Any], body: bytes | None = None) -> None:
    out.write(json.dumps(header).encode() + b"\n" + (b"" if body is None else body + b"\n"))
    out.flush()


def main(argv: list[str]) -> int:
    """The child: load the runs named in ``argv[1]`` (JSON), then answer questions until stdin closes."""
    out = os.fdopen(os.dup(1), "wb")  # the protocol's channel ...
    os.dup2(2, 1)  # ... and anything else printed goes to standard error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    try:
        import torch

        from rnnkit.explore.app import JSONResponse
        from rnnkit.explore.compute import Explorer

        spec = json.loads(argv[1])
        torch.set_num_threads(1)
        explorer = Explorer(
            spec["runs"],
            which=spec["which"],
            device=spec["device"],
            threads=spec["threads"],
            precision=getattr(torch, spec["precision"]),
        )
    except Exception as err:  # the parent shows the line
        _send(
            out, {"status": "error", "message": str(err).splitlines()[0] if str(err) else type(err).__name__}
        )
        return 1
    _send(out, {"status": "ready"})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            method = request["method"]
            if method not in METHODS:
                raise RnnkitError(f"method: one of {', '.join(METHODS)}, got {str(method)[:40]!r}")
            start = time.perf_counter()
            content = getattr(explorer, method)(*request["args"])
            computed = time.perf_counter()
            body = JSONResponse(content).body
            header = {"status": "ok", "compute": (computed - start) * 1000}
            header["encode"] = (time.perf_counter() - computed) * 1000
            _send(out, header, bytes(body))
        except RnnkitError as err:
            _send(
                out, {"status": "refused", "message": str(err).splitlines()[0] if str(err) else "bad request"}
            )
        except Exception as err:  # the parent logs it and answers 500; this process goes on
            _send(out, {"status": "error", "message": f"{type(err).__name__}: {err}"[:500]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
