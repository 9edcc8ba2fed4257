"""``rnnkit explore`` over HTTP (issue 20), through the real console script: every route, bad
requests answered in one JSON line with a 4xx, the server alive after them, a clean stop."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from conftest import CLI_ENV, assert_one_line_error, run_rnnkit, write_toy_lm_corpus, write_toy_treebank

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]
ENV = {**CLI_ENV, "DISPLAY": "", "WAYLAND_DISPLAY": ""}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-app")
    data = write_toy_lm_corpus(root, vocab=8, length=6, train=60, valid=10)
    bank = write_toy_treebank(root / "bank", train=30)
    for args in (
        ["--data", str(data), "--out", str(root / "lm")],
        ["--data", str(bank), "--out", str(root / "tag"), "--task=tag", "--model.bidirectional=true"],
    ):
        proc = run_rnnkit("train", *args, *TINY)
        assert proc.returncode == 0, proc.stderr
    return root / "lm", root / "tag"


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """``rnnkit explore ARGS --port 0 --no-browser``, once it listens: the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "explore", *args, "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("rnnkit explore: http://127.0.0.1:") and line.endswith("(Ctrl-C to stop)\n"), (
        line + proc.stderr.read() if proc.poll() is not None else line
    )
    return proc, line.split()[2]


@pytest.fixture(scope="module")
def server(runs):
    proc, url = start(*map(str, runs))
    yield url
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr.read().strip().splitlines()[-1] == "rnnkit explore: interrupted"


def post(url: str, route: str, body) -> httpx.Response:
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(f"{url}/api/{route}", content=content, timeout=60)


def test_every_route_answers_json(server):
    runs = httpx.get(f"{server}/api/runs", timeout=30).json()["runs"]
    assert [(r["task"], r["directions"], r["quantities"]) for r in runs] == [
        ("lm", 1, ["h", "c", "i", "f", "o"]),
        ("tag", 2, ["h", "c", "i", "f", "o"]),
    ]
    text = "w1 w2 w3 w4"
    lm = post(server, "analyze", {"run": 0, "text": text, "k": 3}).json()
    assert lm["tokens"] == text.split() and len(lm["topk"][0]) == 3 and len(lm["surprisal_bits"]) == 4
    tags = post(server, "analyze", {"run": 1, "text": "the cat sat"}).json()
    assert len(tags["tags"]) == 3 and len(tags["tag_topk"]) == 3
    inside = post(
        server, "inside", {"run": 1, "text": "the cat sat", "layer": 0, "direction": 1, "quantity": "f"}
    )
    assert (
        inside.status_code == 200 and len(inside.json()["values"]) == 3 and inside.json()["range"] == [0, 1]
    )
    units = post(server, "units", {"run": 0, "text": text, "layer": 0, "start": 1, "end": 3}).json()
    assert len(units["units"]) == 8 and "elsewhere" in units
    grad = post(server, "gradient", {"run": 0, "text": text, "layer": 0}).json()
    assert len(grad["map"]) == 4 and grad["direction"] == "forward" and grad["bound"] is None
    assert grad["precision"] == "float32"  # the live page's default (see test_float32_sweep_20.py)
    training = httpx.get(f"{server}/api/training", params={"run": 1}, timeout=30).json()
    assert training["metric"] == "accuracy" and training["epochs"] == [1]
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code in (200, 404) and (page.status_code == 200 or "error" in page.json())


def test_answers_say_where_their_time_went_and_inside_sends_what_the_page_paints(server):
    text = "w1 w2 w3 w4 w5"
    for route, body in (
        ("analyze", {"run": 0, "text": text}),
        ("inside", {"run": 0, "text": text, "layer": 0, "quantity": "c"}),
        ("gradient", {"run": 0, "text": text, "layer": 0}),
    ):
        answer = post(server, route, body)
        assert answer.status_code == 200, answer.text
        timing = dict(part.strip().split(";dur=") for part in answer.headers["server-timing"].split(","))
        assert set(timing) == {"wait", "compute", "encode"} and all(float(v) >= 0 for v in timing.values())
    for quantity in ("h", "c", "f"):
        body = {"run": 1, "text": "the cat sat on the mat", "layer": 0, "direction": 1, "quantity": quantity}
        sent = post(server, "inside", body).json()
        lo, hi = sent["range"]
        largest = max(abs(lo), abs(hi))
        decimals = 3 - math.floor(math.log10(largest))  # 4 significant digits of the colour range
        values = [v for row in sent["values"] for v in row]
        assert values and all(round(v, decimals) == v for v in values), (quantity, values[:5])
        assert max(abs(v) for v in values) > 0  # rounded, not flattened


@pytest.mark.parametrize(
    "route,body,status,words",
    [
        ("analyze", {"run": 0, "text": ""}, 400, "text: empty"),
        ("analyze", {"run": 9, "text": "w1"}, 400, "run: no run 9"),
        ("analyze", {"run": "0", "text": "w1"}, 400, "run: expected an integer"),
        ("analyze", {"run": 0}, 400, "text: required"),
        ("analyze", {"run": 0, "text": "w1", "colour": 1}, 400, "colour: not a field"),
        ("analyze", "[1, 2", 400, "expected a JSON object"),
        ("inside", {"run": 0, "text": "w1 w2", "layer": 5}, 400, "layer: must be in [0, 1]"),
        ("inside", {"run": 0, "text": "w1 w2", "layer": 0, "quantity": "z"}, 400, "quantity: one of"),
        ("gradient", {"run": 0, "text": "w1 w2", "layer": 0, "direction": 1}, 400, "direction: must be in"),
        ("units", {"run": 0, "text": "w1 w2", "layer": 0, "start": 2, "end": 1}, 400, "start, end"),
        ("analyze", {"run": 0, "text": "w1 " * 400_000}, 413, "bytes"),
    ],
)
def test_bad_requests_are_one_json_line_and_the_server_goes_on(server, route, body, status, words):
    answer = post(server, route, body)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message
    assert httpx.get(f"{server}/api/runs", timeout=30).status_code == 200


def test_long_and_hostile_texts_are_cut_or_escaped(server):
    found = post(server, "analyze", {"run": 1, "text": "the\x1b[2J cat " * 20_000}).json()  # 180k characters
    assert len(found["tokens"]) == 1000 and found["tokens"][0] == "the\\x1b[2J" and found["notes"]
    control = post(server, "analyze", {"run": 0, "text": "\x00\x1b w1\u2028w2"}).json()
    assert control["tokens"] == ["\\x00\\x1b", "w1", "w2"] and control["oov"] == [True, False, False]
    assert post(server, "gradient", {"run": 1, "text": "the cat " * 700, "layer": 0}).status_code == 200
    assert httpx.get(f"{server}/nowhere", timeout=30).json() == {"error": "/nowhere: Not Found"}
    assert httpx.get(f"{server}/api/training", params={"run": "x"}, timeout=30).status_code == 400


def test_command_line_mistakes_are_one_line(runs, tmp_path):
    assert_one_line_error(run_rnnkit("explore", str(tmp_path), "--no-browser"), "config.json")
    assert_one_line_error(
        run_rnnkit("explore", *map(str, runs), str(runs[0]), "--no-browser"), "at most 2 runs"
    )
    assert_one_line_error(
        run_rnnkit("explore", str(runs[0]), "--threads", "0", "--no-browser"), "--threads must be in"
    )
    assert_one_line_error(
        run_rnnkit("explore", str(runs[0]), "--gradient-precision", "float16", "--no-browser"),
        "invalid choice",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        assert_one_line_error(
            run_rnnkit("explore", str(runs[0]), "--port", port, "--no-browser"), "already in use"
        )


def test_sigterm_stops_it_with_one_line(runs):
    proc, url = start(str(runs[0]))
    assert httpx.get(f"{url}/api/runs", timeout=30).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read().strip().splitlines()[-1] == "rnnkit explore: stopped (SIGTERM)"
