"""``rnnkit serve`` under load: requests/s and latency, micro-batching on against off (issue 19, item 6).

    python bench/serve.py --lm runs/ptb-3min --tagger runs/ewt-upos-3ep --seconds 30 --clients 1,8,32

For each run it starts two servers on 127.0.0.1 (``rnnkit serve RUN --port 0``, one with
``--no-batching``), then for each client count drives each server in turn (interleaved, so a
change in the machine's load falls on both) for ``--seconds``: N threads, each on its own
kept-alive connection, send one 20-word sentence per request (a language model's
``/v1/score``, a tagger's ``/v1/tag``), drawn from the run's vocabulary with a fixed seed.
Reported: requests/s, p50/p99 latency, errors (any answer but 200, or none within 10 s) and,
per client count, batching on / off. Bounded: 127.0.0.1 only, at most 256 clients and 600 s
a phase, each phase stops at 200000 requests. The client threads share the 2-core CPU with the
server: the ratio is what compares, and the load average is recorded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch

import harness
import rnnkit

HOST = "127.0.0.1"
WORDS = 20
MAX_REQUESTS = 200_000
TARGET = {"clients": 32, "ratio": 3.0, "p99_ms": 250.0}  # issue 19, for the 2x200 LM's /v1/score


def sentences(run: str, count: int, seed: int = 0) -> list[str]:
    """``count`` sentences of :data:`WORDS` words of ``run``'s vocabulary (seed 0)."""
    trained = rnnkit.load(run)
    words = [w for w in trained.vocab.tokens if w.isalpha()] or list(trained.vocab.tokens)
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(WORDS)) for _ in range(count)]


class Server:
    """``rnnkit serve RUN --port 0`` in a subprocess; its port read from the startup line."""

    def __init__(self, run: str, extra: list[str]) -> None:
        command = [sys.executable, "-m", "rnnkit", "serve", run, "--host", HOST, "--port", "0", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # a file, read at the end: a pipe left unread would fill and stall the server
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if " on http://" not in line:
            self.proc.kill()
            raise SystemExit(f"bench/serve.py: the server did not start: {line}{self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        logged = [line for line in self.stderr().splitlines() if "stopped (SIGTERM)" not in line]
        if logged:
            print("server said: " + " | ".join(logged[-5:]), flush=True)
        self.log.close()


def drive(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads posting ``bodies`` (in turn) to ``path`` for ``seconds``: the figures."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    count = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    stop_at = start + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        i = n
        while time.perf_counter() < stop_at:
            with lock:
                if count[0] >= MAX_REQUESTS:
                    break
                count[0] += 1
            body = bodies[i % len(bodies)]
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            if ok:
                latencies[n].append(time.perf_counter() - t0)
            else:
                errors[n] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    done = sorted(x for per in latencies for x in per)
    return {
        "requests": len(done),
        "seconds": round(elapsed, 3),
        "rps": len(done) / elapsed,
        "p50_ms": 1000 * _quantile(done, 0.5),
        "p99_ms": 1000 * _quantile(done, 0.99),
        "errors": sum(errors),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_run(run: str, path: str, key: str, args: argparse.Namespace) -> list[dict]:
    """Both servers of ``run`` under each client count, interleaved: one row per (clients, mode)."""
    texts = sentences(run, 1000)
    bodies = [json.dumps({key: [t]}).encode() for t in texts]
    common = ["--threads", str(args.threads), "--batch-wait-ms", str(args.batch_wait_ms)]
    servers = {
        "on": Server(run, [*common, "--max-batch", str(args.max_batch)]),
        "off": Server(run, [*common, "--no-batching"]),
    }
    rows = []
    try:
        for clients in args.clients:
            for mode, server in servers.items():
                drive(server.port, path, bodies, clients, min(1.0, args.seconds))  # warm up
                figures = drive(server.port, path, bodies, clients, args.seconds)
                load = os.getloadavg()[0]
                rows.append({"run": run, "route": path, "clients": clients, "batching": mode} | figures)
                rows[-1]["load1"] = round(load, 2)
                print(_line(rows[-1]), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return rows


def _line(row: dict) -> str:
    return (
        f"{row['route']:<12} {row['clients']:>7} {row['batching']:>8} {row['rps']:>9.1f} "
        f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['errors']:>6} {row['load1']:>6.2f}"
    )


def ratios(rows: list[dict]) -> list[dict]:
    """Per route and client count: requests/s with batching on / off."""
    out = []
    for row in rows:
        if row["batching"] != "on":
            continue
        off = next(
            r
            for r in rows
            if r["batching"] == "off" and (r["route"], r["clients"]) == (row["route"], row["clients"])
        )
        ratio = row["rps"] / off["rps"] if off["rps"] else float("nan")
        out.append({"route": row["route"], "clients": row["clients"], "rps_on_over_off": ratio})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lm", help="a language model run: /v1/score (e.g. runs/ptb-3min, the 2x200 LSTM)")
    p.add_argument("--tagger", help="a tagger run: /v1/tag (e.g. runs/ewt-upos-3ep)")
    p.add_argument("--seconds", type=float, default=30.0, help="per phase (30)")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per phase (1,8,32)")
    p.add_argument("--threads", type=int, default=2, help="the model thread's CPU threads (2, as serve)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--json", default="bench/results/serve.json")
    args = p.parse_args()
    if not (args.lm or args.tagger):
        p.error("give --lm RUN and/or --tagger RUN")
    args.clients = [int(c) for c in args.clients.split(",")]
    if not all(1 <= c <= 256 for c in args.clients) or not 0 < args.seconds <= 600:
        p.error("--clients each in [1, 256] and --seconds in (0, 600]")
    result: dict = {"machine": harness.machine(torch.device("cpu")), "command": " ".join(sys.argv)}
    result["load_before"] = os.getloadavg()
    head = ("route", "clients", "batching", "req/s", "p50 ms", "p99 ms", "errors", "load")
    print(f"{head[0]:<12} " + " ".join(f"{h:>{w}}" for h, w in zip(head[1:], (7, 8, 9, 8, 8, 6, 6))))
    rows: list[dict] = []
    if args.lm:
        rows += bench_run(args.lm, "/v1/score", "lines", args)
    if args.tagger:
        rows += bench_run(args.tagger, "/v1/tag", "sentences", args)
    result["rows"], result["ratios"] = rows, ratios(rows)
    result["load_after"] = os.getloadavg()
    print()
    for r in result["ratios"]:
        print(f"{r['route']:<12} {r['clients']:>3} clients: batching on / off = {r['rps_on_over_off']:.2f}x")
    if args.lm:
        on = next((r for r in rows if r["route"] == "/v1/score" and r["clients"] == TARGET["clients"]), None)
        ratio = next(
            (r for r in result["ratios"] if r["route"] == "/v1/score" and r["clients"] == TARGET["clients"]),
            None,
        )
        if on is not None and on["batching"] == "on" and ratio is not None:
            met = (
                ratio["rps_on_over_off"] >= TARGET["ratio"]
                and on["p99_ms"] <= TARGET["p99_ms"]
                and on["errors"] == 0
            )
            result["target"] = TARGET | {"met": met}
            goal = f">= {TARGET['ratio']}x, p99 <= {TARGET['p99_ms']:g} ms, 0 errors"
            print(f"target at {TARGET['clients']} clients ({goal}): {'met' if met else 'NOT met'}")
    harness.write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
