"""``rnnkit serve`` (issue 19, item 5): the real server on 127.0.0.1, a free port, a real client.

Each test starts ``python -m rnnkit serve RUN --port 0`` and reads the port from its startup
line, then talks to it with httpx: every route of a language model, a tagger and a classifier
answers what the Python API returns; concurrent requests are micro-batched and answer as one
at a time does; each class of bad request is a 4xx JSON error and the server answers after;
a slow client holds no worker; kill -9 and a restart; SIGTERM and Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

import rnnkit
from conftest import train_tiny_runs
from rnnkit.inference import next_distribution
from rnnkit.serve.methods import next_batch

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]
LIMITS = ["--max-items", "8", "--max-chars", "2000", "--max-tokens", "50"]


class Server:
    """``rnnkit serve RUN --port 0 EXTRA`` in a subprocess (started; :meth:`wait` for its
    startup line): ``url``, ``port``, a ``client``, its stderr."""

    def __init__(self, run: Path, log: Path, *extra: str, port: int = 0) -> None:
        command = [sys.executable, "-m", "rnnkit", "serve", str(run), "--port", str(port), *extra]
        self.log = log
        with open(log, "w") as err:  # a file, not a pipe: nothing the server writes can stall it
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)

    def wait(self) -> Server:
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        self.line = self.proc.stdout.readline() if ready else ""
        if "(Ctrl-C to stop)" not in self.line:
            self.proc.kill()
            raise AssertionError(f"no startup line: {self.line!r} {self.log.read_text()}")
        self.url = self.line.split(" on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def post(self, path: str, body: object) -> httpx.Response:
        return self.client.post(path, json=body)

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if hasattr(self, "client"):
            self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny language model, tagger and classifier, trained once for the module."""
    root = tmp_path_factory.mktemp("serve")
    return {**train_tiny_runs(root, TINY), "root": root}


@pytest.fixture(scope="module")
def lm(runs):
    """The language model's server, batches gathered for 50 ms, small limits to reach."""
    server = Server(runs["lm"], runs["root"] / "lm.log", "--batch-wait-ms", "50", *LIMITS).wait()
    yield server
    assert server.stop() == 0


def close(actual, expected, where: str = "") -> None:
    """Equal JSON, floats to 1e-5 relative (two processes, maybe other batch shapes)."""
    if isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-7), where
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for k in expected:
            close(actual[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            close(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


def test_a_language_models_routes_answer_what_the_python_api_does(lm, runs):
    assert lm.line == f"rnnkit serve: lm model on http://127.0.0.1:{lm.port} (Ctrl-C to stop)\n"
    trained = rnnkit.load(runs["lm"])
    lines = ["w1 w2 w3", "w4 w5 zz9", "w0"]
    response = lm.post("/v1/score", {"lines": lines})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    close(response.json()["results"], trained.score(lines))
    close(lm.post("/v1/score", {"text": "\n".join(lines) + "\n"}).json()["results"], trained.score(lines))
    got = lm.post("/v1/next", {"text": "w1 w2", "k": 3}).json()["next"]
    close([[t["token"], t["p"]] for t in got], [list(x) for x in trained.next("w1 w2", k=3)])
    assert len(lm.post("/v1/next", {"text": ""}).json()["next"]) == 10  # k's default
    drawn = lm.post("/v1/generate", {"prompt": "w1", "seed": 7, "max_tokens": 20, "top_k": 5}).json()
    assert drawn["text"] == trained.generate("w1", max_tokens=20, top_k=5, seed=7)
    health = lm.client.get("/v1/health").json()
    assert health["task"] == "lm" and health["vocab_size"] == len(trained.vocab) and health["queue"] == 0
    assert health["model"]["cell"] == trained.config.model.cell and health["uptime_s"] > 0
    spec = lm.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and set(spec["paths"]) == {
        "/v1/score", "/v1/next", "/v1/generate", "/v1/health"
    }  # fmt: skip
    k = spec["paths"]["/v1/next"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert k["properties"]["k"]["maximum"] == len(trained.vocab)  # the bounds the server checks
    refused = lm.post("/v1/tag", {"sentences": ["a"]})
    assert refused.status_code == 404 and "/v1/score" in refused.json()["error"]


def test_concurrent_requests_are_batched_and_answer_as_one_at_a_time(lm):
    bodies = [{"lines": [f"w{i % 12} w{(i * 5) % 12}" + f" w{i % 7}" * (i % 4)]} for i in range(16)]
    prefixes = [
        {"text": " ".join(f"w{(i * j) % 12}" for j in range(i % 5)), "k": 1 + i % 4} for i in range(16)
    ]
    before = lm.client.get("/v1/health").json()["served"]
    with ThreadPoolExecutor(32) as pool:
        scored = list(pool.map(lambda b: lm.post("/v1/score", b), bodies))
        nexts = list(pool.map(lambda b: lm.post("/v1/next", b), prefixes))
    after = lm.client.get("/v1/health").json()["served"]
    assert all(r.status_code == 200 for r in scored + nexts)
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 32 and batches < requests  # gathered: some batch held several requests
    for body, response in zip(bodies, scored):  # one at a time: each request alone in its batch
        close(response.json(), lm.post("/v1/score", body).json())
    for body, response in zip(prefixes, nexts):
        close(response.json(), lm.post("/v1/next", body).json())


def test_a_batched_next_equals_next_distribution(runs):
    trained = rnnkit.load(runs["lm"])
    prefixes = ["", "w1", "w3 w4 w5 w6 w7", "w2 w2", "zz w0 w11 w3"]
    ks = [1, 3, 12, 5, 2]
    batched = next_batch(trained.model, trained.vocab, trained.codec, prefixes, ks)
    for prefix, k, found in zip(prefixes, ks, batched):
        alone = next_distribution(trained.model, trained.vocab, trained.codec, prefix, k)
        assert [t for t, _ in found] == [t for t, _ in alone]
        torch.testing.assert_close([p for _, p in found], [p for _, p in alone], rtol=1e-5, atol=1e-7)


def test_every_bad_request_is_a_4xx_naming_the_problem_and_the_server_goes_on(lm):
    nested = '{"lines": ' + "[" * 30_000 + "]" * 30_000 + "}"  # under the body's limit
    cases = [  # (path, raw body, status, words in the error)
        ("/v1/score", b'{"lines": ["w1"', 400, "not JSON"),
        ("/v1/score", b"\xff\xfe\x00", 400, "JSON"),
        ("/v1/score", b"", 400, "not JSON"),
        ("/v1/score", b'["w1"]', 400, "JSON object"),
        ("/v1/next", b'{"text": "w1", "k": NaN}', 400, "NaN"),
        ("/v1/score", nested.encode(), 400, "JSON"),
        ("/v1/score", b'{"lines": "w1"}', 422, "lines: expected an array"),
        ("/v1/score", b'{"lines": [1]}', 422, "lines[0]: expected a string"),
        ("/v1/score", b'{"lines": ["w1"], "extra": 1}', 422, "extra: unknown field"),
        ("/v1/score", b'{"lines": [""]}', 422, "lines[0]: empty"),
        ("/v1/score", b'{"text": ""}', 422, "text: empty"),
        ("/v1/score", b"{}", 422, "exactly one of lines or text"),
        ("/v1/score", b'{"lines": ["a\\nb"]}', 422, "lines[0]: holds a newline"),
        ("/v1/score", json.dumps({"lines": ["w1"] * 9}).encode(), 422, "--max-items"),
        ("/v1/score", json.dumps({"text": "w1 " * 700}).encode(), 413, "--max-chars"),
        ("/v1/next", b'{"text": "w1", "k": 0}', 422, "k: expected at least 1"),
        ("/v1/next", b'{"text": "w1", "k": 100000}', 422, "k: expected at most"),
        ("/v1/next", b'{"text": "w1", "k": 2.5}', 422, "k: expected an integer"),
        ("/v1/next", b'{"text": "w1", "k": true}', 422, "k: expected an integer"),
        ("/v1/next", b'{"k": 3}', 422, "text: missing"),
        ("/v1/next", b'{"text": "\\ud800"}', 422, "surrogate"),
        ("/v1/generate", b'{"max_tokens": 51}', 422, "max_tokens: expected at most 50"),
        ("/v1/generate", b'{"temperature": 0}', 422, "temperature"),
        ("/v1/generate", b'{"top_p": 1.5}', 422, "top_p"),
        ("/v1/generate", b'{"seed": -1}', 422, "seed"),
        ("/v1/generate", b'{"stop": "yes"}', 422, "stop: expected true or false"),
    ]
    for path, body, status, words in cases:
        response = lm.client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body[:80], response.text)
        assert words in response.json()["error"], (body[:80], response.text)
        assert lm.client.get("/v1/health").status_code == 200
    too_big = lm.client.post("/v1/score", content=b"x" * (2 * 6 * 2000 + 70_000))  # its Content-Length
    assert too_big.status_code == 413 and "bytes" in too_big.json()["error"]
    streamed = lm.client.post("/v1/score", content=iter([b"{" + b" " * 50_000] * 4))  # chunked, no length
    assert streamed.status_code == 413 and "bytes" in streamed.json()["error"]
    wrong_method = lm.client.get("/v1/score")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.json()["error"]
    nowhere = lm.client.get("/v2/nothing")
    assert nowhere.status_code == 404 and "/v1/next" in nowhere.json()["error"]
    assert lm.post("/v1/score", {"lines": ["w1 w2"]}).status_code == 200  # and it still scores
    assert "Traceback" not in lm.stderr()


def test_a_slow_client_holds_no_worker(lm):
    with socket.create_connection(("127.0.0.1", lm.port)) as slow:
        slow.sendall(b'POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"lines": [')
        started = time.monotonic()
        assert lm.post("/v1/score", {"lines": ["w1 w2"]}).status_code == 200  # not behind the slow one
        assert time.monotonic() - started < 30


def test_deadlines_kill_and_restart(runs):
    server = Server(
        runs["lm"], runs["root"] / "timeout.log", "--timeout", "1", "--max-tokens", "100000"
    ).wait()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as slow:  # a body that never ends
            slow.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(30)
            answer = b""
            while chunk := slow.recv(4096):  # the server answers, then closes: the body was cut
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "--timeout" in answer
        long = server.post("/v1/generate", {"prompt": "w1", "max_tokens": 100_000, "stop": False, "seed": 0})
        assert long.status_code == 504 and "--timeout" in long.json()["error"]
        assert server.client.get("/v1/health").status_code == 200  # the event loop is free meanwhile
    finally:
        server.proc.kill()  # kill -9, mid-computation
        server.proc.wait(timeout=60)
        server.client.close()
    again = Server(runs["lm"], runs["root"] / "again.log", port=server.port).wait()  # the same run and port
    assert again.post("/v1/score", {"lines": ["w1 w2"]}).status_code == 200
    assert again.stop(signal.SIGTERM) == 0
    assert again.stderr().strip().splitlines() == ["rnnkit serve: stopped (SIGTERM)"]


def test_a_tagger_and_a_classifier_answer_what_the_python_api_does(runs):
    sentences = ["the cat sat", ["dog", "ran", "on", "the", "mat", "."], "unknownword the"]
    servers = {task: Server(runs[task], runs["root"] / f"{task}.log") for task in ("tag", "classify")}
    try:  # both started at once: their start-ups overlap
        for task, path in (("tag", "/v1/tag"), ("classify", "/v1/classify")):
            server = servers[task].wait()
            assert f"rnnkit serve: {task} model on " in server.line
            response = server.post(path, {"sentences": sentences})
            assert response.status_code == 200, response.text
            expected = getattr(rnnkit.load(runs[task]), task)(sentences)
            close(response.json()["tags" if task == "tag" else "results"], expected)
            assert server.post(path, {"sentences": ["  "]}).status_code == 422
            assert server.post(path, {"sentences": [[]]}).status_code == 422
            other = server.post("/v1/score", {"lines": ["a"]})
            assert other.status_code == 404 and path in other.json()["error"]
            assert server.client.get("/v1/health").json()["task"] == task
    finally:
        status = {
            "tag": servers["tag"].stop(signal.SIGTERM),
            "classify": servers["classify"].stop(signal.SIGINT),
        }
    assert status == {"tag": 0, "classify": 130}  # SIGTERM: 0; Ctrl-C: 130
    assert servers["tag"].stderr().strip() == "rnnkit serve: stopped (SIGTERM)"
    assert servers["classify"].stderr().strip() == "rnnkit serve: interrupted"


def test_a_busy_port_or_a_bad_host_is_one_line(lm, runs):
    for extra in (["--port", str(lm.port)], ["--host", "192.0.2.1"], ["--port", "70000"]):
        proc = subprocess.run(
            [sys.executable, "-m", "rnnkit", "serve", str(runs["lm"]), *extra],
            capture_output=True, text=True, env=ENV, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("rnnkit serve: error: --"), proc.stderr
    assert lm.client.get("/v1/health").status_code == 200


def test_only_a_loopback_address_is_quiet():
    from rnnkit.serve.address import bind, is_loopback

    for host, loopback in (("127.0.0.1", True), ("localhost", True), ("0.0.0.0", False)):
        sock = bind(host, 0)  # bound, never listening: nothing can connect
        try:
            assert is_loopback(sock) is loopback, host
        finally:
            sock.close()
