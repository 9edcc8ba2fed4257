"""``rnnkit explore RUN [RUN2]``: a local page to see inside trained recurrent networks.

The address is bound before any model loads (a busy port is a one-line error at once;
``--port 0``, the default, takes a free one), the startup line names the URL, and the
page opens in the user's browser unless ``--no-browser`` or there is no display. Every
number the page shows is computed by :mod:`rnnkit.explore` on the inference code the
other verbs use.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

MAX_RUNS = 2
"""Runs shown side by side at most."""


def explore_parser(verbs: Any) -> None:
    """Declare ``rnnkit explore`` and its options (light: no torch, no starlette)."""
    explore = verbs.add_parser(
        "explore",
        help="see inside trained runs in the browser: surprisal, gates, gradient flow, training",
        description=(
            "Serve an interactive page on 127.0.0.1 for RUN (and RUN2 side by side): type text and see "
            "each token's surprisal and the top next tokens (language models), tags or class "
            "probabilities (taggers, classifiers); a units x time heatmap of h, c and each gate of any "
            "layer and direction, with the units that fire in a selected span; the map of "
            "||dE_t/dh_k|| and its fall with distance (for Elman cells against the lecture's bound); "
            "and the run's learning curves. Needs no network."
        ),
    )
    explore.add_argument(
        "runs", nargs="+", metavar="RUN", help="a run directory; a second one is shown beside it"
    )
    explore.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    explore.add_argument("--port", type=int, default=0, help="default: 0, a free port (the URL is printed)")
    explore.add_argument("--no-browser", action="store_true", help="print the URL only; open no browser")
    explore.add_argument(
        "--which",
        default="best",
        choices=("best", "last"),
        help="the checkpoint (default: best; a run still training shows its last)",
    )
    explore.add_argument("--device", default="cpu", help="auto, cpu, cuda, ... (default: cpu)")
    explore.add_argument(
        "--threads",
        type=int,
        default=2,
        help="how the page's answers are computed (default: 2): the text's own answer (surprisal, tags, "
        "classes) in this process and the views read from the float64 probe (inside, units, gradient "
        "map) in a second one, side by side on two cores; more: the gradient map's rows split over "
        "threads - 1 threads of that process (on an idle machine with the cores); 1: everything in "
        "this process, one answer at a time",
    )
    explore.add_argument(
        "--gradient-precision",
        default="float32",
        choices=("float32", "float64"),
        help="what the gradient map's sweep carries (default: float32, each row rescaled by a power of "
        "two at every step so that a gradient vanishing to 1e-70 keeps float32's relative precision, "
        "~1e-5; about 1.5x faster); float64: the diagnostics' own numbers (rnnkit diagnose)",
    )


def explore(args: argparse.Namespace) -> int:
    """Serve the explorer until Ctrl-C or SIGTERM; the exit status (130 after Ctrl-C, else 0)."""
    from rnnkit.cli import checks
    from rnnkit.errors import RnnkitError
    from rnnkit.serve.address import bind

    if len(args.runs) > MAX_RUNS:
        raise RnnkitError(f"RUN: at most {MAX_RUNS} runs side by side, got {len(args.runs)}")
    checks.between("--port", args.port, 0, 65535, "a TCP port")
    checks.between("--threads", args.threads, 1, 1024, "CPU threads")
    sock = bind(args.host, args.port)  # before any model loads: a busy port fails at once
    try:
        return _explore(args, sock)
    finally:
        sock.close()


def _explore(args: argparse.Namespace, sock: Any) -> int:
    import torch

    from rnnkit.explore.compute import Explorer
    from rnnkit.explore.worker import ProbeProcess
    from rnnkit.training.loop import pick_device

    torch.set_num_threads(1)  # see --threads: the answers run side by side, each on one thread
    device = pick_device(args.device)
    probes = None
    if args.threads > 1:  # started first: it loads its runs while this process loads its own
        probes = ProbeProcess(args.runs, args.which, str(device), args.threads, args.gradient_precision)
    try:
        explorer = Explorer(
            args.runs,
            which=args.which,
            device=device,
            threads=args.threads,
            precision=getattr(torch, args.gradient_precision),
            load_probes=probes is None,
        )
        if probes is not None:
            probes.ready()
        return _serve(args, sock, explorer, probes)
    finally:
        if probes is not None:
            probes.close()


def _serve(args: argparse.Namespace, sock: Any, explorer: Any, probes: Any) -> int:
    from rnnkit.explore import make_app
    from rnnkit.serve import server
    from rnnkit.serve.address import is_loopback, url

    for note in explorer.notes:
        print(f"rnnkit explore: {note}", file=sys.stderr, flush=True)
    app = make_app(explorer, probes)
    if not is_loopback(sock):
        print(
            f"rnnkit explore: warning: listening on {sock.getsockname()[0]}: other machines can reach "
            "this page, which has no authentication",
            file=sys.stderr,
            flush=True,
        )
    address = url(sock)
    sock.listen(128)  # uvicorn listens too; the browser opened below must find the port open
    if not args.no_browser:
        _open_browser(address)
    stopped_by = server.run(app, sock, f"rnnkit explore: {address} (Ctrl-C to stop)")
    stopped = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped (SIGTERM)"}.get(stopped_by, "stopped")
    print(f"rnnkit explore: {stopped}", file=sys.stderr, flush=True)
    return 130 if stopped_by == signal.SIGINT else 0


def _open_browser(url: str) -> None:
    """Open ``url`` in the user's browser, in the background; never fails. Without a display
    on Linux it does nothing: Python's fallback would run a text browser in this terminal."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        print(f"rnnkit explore: no display; open {url} in a browser", file=sys.stderr, flush=True)
        return

    def opened() -> None:
        import contextlib
        import webbrowser

        with contextlib.suppress(Exception):  # no browser at all: the printed URL is enough
            webbrowser.open(url)

    threading.Thread(target=opened, daemon=True).start()
