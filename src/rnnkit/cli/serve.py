"""``rnnkit serve RUN``: a trained run (or an exported folder) behind an HTTP/JSON service.

The address is bound before the model loads, so a port in use or a host that is not this
machine's is a one-line error (exit 2) at once; ``--port 0`` takes a free port, and the
startup line names it. Ctrl-C or SIGTERM stops the service gracefully (requests in flight
are answered) with one line; the status is 130 after Ctrl-C, else 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.serve.address import bind, is_loopback, url


def serve_parser(verbs: Any) -> None:
    """Declare ``rnnkit serve`` and its options (light: no torch, no starlette)."""
    serve = verbs.add_parser(
        "serve",
        help="serve a trained run over HTTP/JSON on 127.0.0.1",
        description=(
            "Serve RUN's model over HTTP/JSON: a language model's POST /v1/score, /v1/next, "
            "/v1/generate; a tagger's /v1/tag; a classifier's /v1/classify; GET /v1/health and "
            "/openapi.json. Concurrent requests of a route are gathered into one padded batch "
            "(--batch-wait-ms, --max-batch) on one model thread."
        ),
    )
    serve.add_argument("run", help="a run directory or an exported folder")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000; 0 picks a free port")
    serve.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests (5)"
    )
    serve.add_argument(
        "--max-batch", type=int, default=64, help="lines, sentences or prompts per batch at most (64)"
    )
    serve.add_argument("--no-batching", action="store_true", help="answer one request at a time (a baseline)")
    serve.add_argument("--device", default="cpu", help="auto, cpu, cuda, ... (default: cpu)")
    serve.add_argument("--which", default="best", choices=("best", "last"), help="the checkpoint (best)")
    serve.add_argument(
        "--quantize", default=None, choices=("int8",), help="int8 weights (CPU; LSTM and GRU models)"
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="the model thread's CPU threads (default: 2, or 1 on a 1-core machine; on 2 cores, 2 threads "
        "served 32 clients 4x faster batched than one at a time, 1 thread 2.9x: bench/RESULTS.md)",
    )
    serve.add_argument(
        "--max-chars", type=int, default=65536, help="characters of text per request at most (65536)"
    )
    serve.add_argument(
        "--max-items", type=int, default=256, help="lines or sentences per request at most (256)"
    )
    serve.add_argument(
        "--max-tokens", type=int, default=1000, help="tokens one /v1/generate may ask for at most (1000)"
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a request may take, from its arrival: its body (else 408), its wait (503) "
        "and its computation (504); default 30",
    )


def _check(args: argparse.Namespace) -> None:
    from rnnkit.cli import checks

    checks.between("--port", args.port, 0, 65535, "a TCP port")
    if not (0 <= args.batch_wait_ms <= 1000):
        raise RnnkitError(f"--batch-wait-ms must be in [0, 1000], got {args.batch_wait_ms}")
    checks.between("--max-batch", args.max_batch, 1, 4096, "a batch is held in memory at once")
    checks.between("--threads", args.threads, 1, 1024, "CPU threads")
    checks.between("--max-chars", args.max_chars, 1, 1 << 24, "a request is held in memory whole")
    checks.between("--max-items", args.max_items, 1, 1 << 16, "a request is held in memory whole")
    checks.between("--max-tokens", args.max_tokens, 1, 100_000, "a sample is held whole until sent")
    if not (0 < args.timeout <= 3600):
        raise RnnkitError(f"--timeout must be in (0, 3600] seconds, got {args.timeout}")


def serve(args: argparse.Namespace) -> int:
    """Run the service until Ctrl-C or SIGTERM; the exit status (130 after Ctrl-C, else 0)."""
    _check(args)
    sock = bind(args.host, args.port)  # before the model loads: a busy port fails at once
    try:
        return _serve(args, sock)
    finally:
        sock.close()


def _serve(args: argparse.Namespace, sock: socket.socket) -> int:
    import torch

    from rnnkit.export.quantize import quantize_run
    from rnnkit.inference import load
    from rnnkit.serve import server
    from rnnkit.serve.app import build_app
    from rnnkit.serve.schema import Limits
    from rnnkit.training.loop import pick_device

    torch.set_num_threads(args.threads)
    trained = load(args.run, which=args.which, device=pick_device(args.device))
    quantize_run(trained, args.quantize)  # int8: the model every route answers with; None: as loaded
    vocab = len(trained.vocab) if trained.vocab is not None else 1
    limits = Limits(args.max_chars, args.max_items, args.max_tokens, min(vocab, 1000), args.timeout)
    app = build_app(
        trained, limits, args.batch_wait_ms / 1000, args.max_batch, not args.no_batching, bool(args.quantize)
    )
    if not is_loopback(sock):
        print(
            f"rnnkit serve: warning: listening on {sock.getsockname()[0]}: other machines can reach this "
            "service, which has no authentication",
            file=sys.stderr,
            flush=True,
        )
    line = f"rnnkit serve: {trained.config.task} model on {url(sock)} (Ctrl-C to stop)"
    stopped_by = server.run(app, sock, line)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already: a second Ctrl-C changes nothing
    said: dict[int | None, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped (SIGTERM)"}
    stopped = said.get(stopped_by, "stopped")
    print(f"rnnkit serve: {stopped}", file=sys.stderr, flush=True)
    status = 130 if stopped_by == signal.SIGINT else 0
    if app.state.service.executor.busy:  # a computation nobody will read: the process must not
        sys.stdout.flush()  # tear down torch under it, nor wait for it
        os._exit(status)
    return status
