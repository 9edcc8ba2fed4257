"""``rnnkit explore`` in a real browser (issue 20): Debian's chromium driven by Playwright.

One explore server (the real console script, ``--port 0``) serves two tiny language models for
the whole module: an LSTM and a sigmoid Elman network, side by side. The tests type, hover, drag
and click as a user does and check what the page shows against what the server's JSON API says,
with the browser console free of errors and every request going to 127.0.0.1. The numbers
themselves are checked against independent oracles in ``test_compute_20.py``; here the question
is whether the page shows them faithfully.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import CLI_ENV, write_toy_lm_corpus
from rnnkit.cli.main import main


def _chromium_module():
    """bench/chromium.py, the one place the browser's path and flags are written (the benchmark
    launches it the same way)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "chromium.py"
    spec = importlib.util.spec_from_file_location("rnnkit_bench_chromium", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chromium = _chromium_module()
CHROMIUM = chromium.CHROMIUM
RIGHTMOST = "e => Math.max(...[e, ...e.querySelectorAll('*')].map((c) => c.getBoundingClientRect().right))"
"""The right edge of an element and everything inside it, in CSS pixels."""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium)"
)
playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip)")
httpx = pytest.importorskip("httpx")

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=2", "--train.threads=1"]
TINY += [
    "--train.optimizer=adam",
    "--train.lr=0.01",
    "--no-progress",
    "--train.bptt=8",
    "--train.log_every=2",
]
TEXT = "w1 w2 w3 w4 w5 w6 w7 w8 zzz w9 w10 w11"  # "zzz" is not in the toy vocabulary


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two tiny word-level LMs on the toy corpus: a 2-layer LSTM and a sigmoid Elman network."""
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("explore"))
    lstm, elman = root / "lstm", root / "elman"
    assert main(["train", "--data", str(root), "--out", str(lstm), *TINY, "--model.num_layers=2"]) == 0
    options = ["--model.cell=elman", "--model.nonlinearity=sigmoid"]
    assert main(["train", "--data", str(root), "--out", str(elman), *TINY, *options]) == 0
    return [lstm, elman]


@pytest.fixture(scope="module")
def server(runs):
    """``python -m rnnkit explore LSTM ELMAN --port 0 --no-browser``: its base URL."""
    cmd = [sys.executable, "-m", "rnnkit", "explore", *map(str, runs), "--port", "0", "--no-browser"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CLI_ENV)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        while True:
            line = lines.get(timeout=90)
            seen.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                break
    except queue.Empty:
        proc.kill()
        pytest.fail(f"rnnkit explore printed no http://127.0.0.1:PORT address: {''.join(seen)!r}")
    yield found.group(0)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        browser = chromium.launch(pw, CHROMIUM)
        yield browser
        browser.close()


class Watched:
    """A page whose console errors and requested hosts are recorded for the end of the test."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.allowed_error = None  # a regex of console errors a test provokes on purpose
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.urls.append(r.url))

    def settle(self, timeout: float = 30_000) -> None:
        """Wait until no request is in flight and no debounced update is pending."""
        self.page.wait_for_function(
            "document.body.dataset.ready === '1' && window.rnnkitExplore.settled()", timeout=timeout
        )

    def check(self) -> None:
        errors = [e for e in self.errors if not (self.allowed_error and re.search(self.allowed_error, e))]
        assert not errors, errors
        for url in self.urls:
            parts = urlsplit(url)
            assert parts.scheme in ("data", "file") or parts.hostname == "127.0.0.1", url


def open_page(browser, url: str) -> Watched:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    watched = Watched(context.new_page())
    watched.page.goto(url)
    watched.settle()
    return watched


@pytest.fixture
def live(browser, server):
    watched = open_page(browser, server)
    yield watched
    watched.check()
    watched.page.context.close()


def post(server: str, path: str, **body) -> dict:
    answer = httpx.post(f"{server}{path}", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def luminance(css: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def canvas_colours(page, selector: str) -> int:
    """How many distinct colours the canvas holds (a blank canvas has one)."""
    return page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            return seen.size;
        }""",
        selector,
    )


def type_text(watched: Watched, text: str) -> None:
    watched.page.fill("#text", text)
    watched.settle(timeout=60_000)


def test_typed_text_is_coloured_by_surprisal_and_a_hover_shows_the_next_tokens(live, server, tmp_path):
    page = live.page
    type_text(live, TEXT)
    want = post(server, "/api/analyze", run=0, text=TEXT, k=5)
    tokens = page.locator("#text-panel-0 .tokens .tok")
    assert tokens.all_inner_texts() == want["tokens"]
    shown = [t.get_attribute("data-bits") for t in tokens.all()]
    for bits, expected in zip(shown, want["surprisal_bits"]):
        assert (bits is None) == (expected is None)
        if expected is not None:
            assert float(bits) == pytest.approx(expected, rel=1e-9)
    # a more surprising token is never lighter than a less surprising one (the scale is monotone)
    colours = [t.evaluate("e => getComputedStyle(e).backgroundColor") for t in tokens.all()]
    pairs = [(b, luminance(c)) for b, c in zip(want["surprisal_bits"], colours) if b is not None]
    for b1, l1 in pairs:
        for b2, l2 in pairs:
            if b1 > b2 + 0.25:
                assert l1 <= l2, (b1, b2, colours)
    assert float(page.inner_text("#text-panel-0 .ppl")) == pytest.approx(want["ppl"], rel=1e-3)
    oov = [i for i, flag in enumerate(want["oov"]) if flag]
    assert oov, "the toy vocabulary has no 'zzz': the API should flag it"
    for i in oov:
        assert "oov" in tokens.nth(i).get_attribute("class")
    assert page.locator("#text-panel-0 .surprisal-legend").inner_text().count("bits") == 1
    tokens.nth(3).hover()
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    content = tooltip.inner_text()
    for token, prob in want["topk"][3]:
        assert token in content
        assert f"{100 * prob:.0f}" in content or f"{100 * prob:.1f}" in content
    page.screenshot(path=str(tmp_path / "explore-text.png"))


def test_dragging_over_a_span_lists_the_units_on_inside_it(live, server, tmp_path):
    page = live.page
    type_text(live, TEXT)
    heat = page.locator("#inside-panel-0 canvas.heatmap")
    assert canvas_colours(page, "#inside-panel-0 canvas.heatmap") > 3
    inside = post(server, "/api/inside", run=0, text=TEXT, layer=0, direction=0, quantity="h")
    assert heat.get_attribute("data-steps") == str(len(inside["values"]))
    assert page.locator("#inside-panel-0 .legend").inner_text().startswith(inside["label"])
    heat.scroll_into_view_if_needed()
    box = heat.bounding_box()
    ml, cw, mt = (float(heat.get_attribute(f"data-{k}")) for k in ("ml", "cw", "mt"))
    y = box["y"] + mt + 3
    page.mouse.move(box["x"] + ml + 2.5 * cw, y)
    page.mouse.down()
    page.mouse.move(box["x"] + ml + 3.5 * cw, y)
    page.mouse.move(box["x"] + ml + 4.5 * cw, y)
    page.mouse.up()
    rows = page.locator("#inside-panel-0 .units tr.unit-row")
    rows.first.wait_for()
    live.settle()
    want = post(server, "/api/units", run=0, text=TEXT, layer=0, direction=0, quantity="h", start=2, end=5)
    assert [int(r.get_attribute("data-unit")) for r in rows.all()] == [u["unit"] for u in want["units"]]
    firing = sum(sum(s["on"]) for e in want["elsewhere"][:4] for s in e["snippets"])  # 4 units shown
    assert page.locator("#inside-panel-0 .snippet .fire").count() == firing
    assert page.locator("#inside-panel-0 .axis-tokens text.on").count() == 3
    page.locator("#inside-section").screenshot(path=str(tmp_path / "explore-inside.png"))


def test_a_gate_of_a_deeper_layer_is_drawn_on_its_fixed_range(live, server):
    page = live.page
    type_text(live, TEXT)
    panel = page.locator("#inside-panel-0")
    panel.locator("select[aria-label=layer]").select_option("1")
    panel.locator("select[aria-label=quantity]").select_option("f")
    live.settle()
    want = post(server, "/api/inside", run=0, text=TEXT, layer=1, direction=0, quantity="f")
    assert want["range"] == [0, 1]
    legend = panel.locator(".legend").inner_text()
    assert want["label"] in legend
    assert "0" in legend and "1" in legend
    assert canvas_colours(page, "#inside-panel-0 canvas.heatmap") > 3


def test_clicking_a_time_step_shades_the_words_its_gradient_reaches(live, server, tmp_path):
    page = live.page
    type_text(live, TEXT)
    grad = page.locator("#gradient-panel-0 canvas.gradmap")
    assert canvas_colours(page, "#gradient-panel-0 canvas.gradmap") > 3
    grad.scroll_into_view_if_needed()
    box = grad.bounding_box()
    mt, cw = float(grad.get_attribute("data-mt")), float(grad.get_attribute("data-cw"))
    t = 5
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + mt + (t + 0.5) * cw)
    assert f"t = {t} " in page.locator("#gradient-panel-0 .reach h4").inner_text()
    # the map opens on the top layer (the one the loss reads): layer 1 of the 2-layer LSTM
    assert page.locator("#gradient-panel-0 select[aria-label=layer]").input_value() == "1"
    want = post(server, "/api/gradient", run=0, text=TEXT, layer=1, direction=0)
    words = page.locator("#gradient-panel-0 .reach-tokens .tok")
    assert words.count() == len(want["tokens"])
    for k, value in enumerate(want["map"][t]):
        word = words.nth(k)
        if value is None:
            assert k > t  # forward direction: nothing reaches the future
            assert "unreached" in word.get_attribute("class")
        else:
            assert float(word.get_attribute("data-norm")) == pytest.approx(value, rel=1e-9)
    assert "from" in words.nth(t).get_attribute("class")
    assert "float32 sweep" in page.locator("#gradient-panel-0 .hint").inner_text()  # the live default
    # the sigmoid Elman run beside it: the measured mean by distance and the lecture's bound
    elman = post(server, "/api/gradient", run=1, text=TEXT, layer=0, direction=0)
    assert elman["bound"] is not None
    paths = page.locator("#gradient-panel-1 .by-distance path.series")
    assert paths.count() == 2
    assert all(len(p.get_attribute("d")) > 10 for p in paths.all())
    page.locator("#gradient-section").screenshot(path=str(tmp_path / "explore-gradient.png"))


def test_two_runs_sit_side_by_side_with_their_training_curves(live, server, tmp_path):
    page = live.page
    type_text(live, TEXT)
    # nothing of one panel runs into the next, and the page does not scroll sideways: at 1400 px
    # and at 1000, near the narrowest width that still puts the panels side by side
    for width in (1400, 1000):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_function(f"window.innerWidth === {width}")
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), width
        for section in ("text", "inside", "gradient", "training"):
            left = page.locator(f"#{section}-panel-0").bounding_box()
            right = page.locator(f"#{section}-panel-1").bounding_box()
            assert left["x"] + left["width"] <= right["x"], (width, section)
            for legend in page.locator(f"#{section}-panel-0 .legend").all():
                reach = legend.evaluate(RIGHTMOST)
                assert reach <= right["x"], (width, section, reach, right["x"])
    page.set_viewport_size({"width": 1400, "height": 1000})
    for section in ("text", "inside", "gradient", "training"):
        assert "two" in page.locator(f"#{section}-panels").get_attribute("class")
        assert page.locator(f"#{section}-panel-0").get_attribute("data-run") == "0"
        assert page.locator(f"#{section}-panel-1").get_attribute("data-run") == "1"
    training = httpx.get(f"{server}/api/training?run=0", timeout=30).json()
    assert len(training["epochs"]) == 2 and training["steps"], training
    charts = page.locator("#training-panel-0 svg.chart")
    assert charts.count() == 3  # the metric per epoch, the gradient norm, the learning rate
    assert all(len(p.get_attribute("d")) > 1 for p in charts.locator("path.series").all())
    assert page.locator("#training-panel-0 .hline").count() == (1 if training["clip"] is not None else 0)
    page.select_option("#run-b", "")
    live.settle()
    assert page.locator("#text-panel-1").count() == 0
    assert "two" not in page.locator("#text-panels").get_attribute("class")
    page.screenshot(path=str(tmp_path / "explore-training.png"), full_page=True)


def test_bad_input_gets_a_message_never_a_dead_page(live, server):
    page = live.page
    type_text(live, "   ")
    assert "Type some text" in page.locator("#text-panel-0 .msgs").inner_text()
    type_text(live, "w1\x00w2\x07 w3\x1b[31m w4")
    shown = "".join(page.locator("#text-panel-0 .tokens .tok").all_inner_texts())
    assert shown and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", shown)
    long = "w1 w2 w3 " * 34_000  # 102,000 characters
    type_text(live, long)
    notes = post(server, "/api/analyze", run=0, text=long, k=5)["notes"]
    assert notes and notes[0] in page.locator("#text-panel-0 .msgs").inner_text()
    # an error the server answers is shown as its one line; a server that does not answer too
    live.allowed_error = r"Failed to load resource"
    page.route(
        "**/api/analyze",
        lambda route: route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": "text: say what was expected here"}),
        ),
    )
    type_text(live, "w1 w2")
    assert "say what was expected here" in page.locator("#text-panel-0 .msg.error").inner_text()
    page.unroute("**/api/analyze")
    page.route("**/api/gradient", lambda route: route.abort())
    type_text(live, "w1 w2 w3")
    assert "did not answer" in page.locator("#gradient-panel-0 .msg.error").inner_text()
    assert page.locator("#text-panel-0 .tokens .tok").count() == 3  # the rest of the page lives on


def test_the_static_snapshot_works_from_the_file_system(browser, runs, tmp_path):
    explore = pytest.importorskip("rnnkit.explore")
    texts = [TEXT, "w3 w1 w4 w1 w5"]
    snapshot = explore.snapshot([str(r) for r in runs], texts)
    page_file = tmp_path / "snap" / "index.html"  # one file: its script, style and data inside
    page_file.parent.mkdir()
    page_file.write_text(explore.static_page(snapshot, preface="<section id='preface'>before</section>"))
    watched = open_page(browser, page_file.as_uri())
    page = watched.page
    assert page.evaluate("document.body.dataset.mode") == "static"
    assert page.locator("main > #preface").inner_text() == "before"
    assert "rnnkit explore" in page.locator("#mode").inner_text()
    assert page.locator("#text").get_attribute("readonly") is not None
    want = snapshot["results"]["0|0"]["analyze"]
    assert page.locator("#text-panel-0 .tokens .tok").all_inner_texts() == want["tokens"]
    page.select_option("#text-pick", "1")
    watched.settle()
    want = snapshot["results"]["0|1"]["analyze"]
    assert page.locator("#text-panel-0 .tokens .tok").all_inner_texts() == want["tokens"]
    assert canvas_colours(page, "#gradient-panel-1 canvas.gradmap") > 3
    assert "float32" not in page.locator("#gradient-panel-1 .hint").inner_text()  # the snapshot: float64
    # the snapshot holds the units of single steps of the top layer; any other span needs the server
    panel = page.locator("#inside-panel-0")
    panel.locator("select[aria-label=layer]").select_option("1")
    watched.settle()
    heat = panel.locator("canvas.heatmap")
    heat.scroll_into_view_if_needed()
    box = heat.bounding_box()
    ml, cw, mt = (float(heat.get_attribute(f"data-{k}")) for k in ("ml", "cw", "mt"))
    y = box["y"] + mt + 3
    page.mouse.click(box["x"] + ml + 2.5 * cw, y)
    panel.locator(".units tr.unit-row").first.wait_for()
    want = snapshot["results"]["0|1"]["units"]["1/0/h/2-3"]["units"]
    assert [int(r.get_attribute("data-unit")) for r in panel.locator(".units tr.unit-row").all()] == [
        u["unit"] for u in want
    ]
    page.mouse.move(box["x"] + ml + 0.5 * cw, y)
    page.mouse.down()
    page.mouse.move(box["x"] + ml + 3.5 * cw, y)
    page.mouse.up()
    watched.settle()  # the snapshot answers asynchronously, as the server does
    assert "live server" in panel.locator(".units-out").inner_text()
    page.screenshot(path=str(tmp_path / "explore-static.png"), full_page=True)
    watched.check()
    page.context.close()
