"""How live ``rnnkit explore`` feels: latency measured in the browser, input event to painted update.

    python bench/explore.py                       # runs/ptb-3min (2x200 LSTM), 100 tokens, 30 edits
    python bench/explore.py --run RUN --tokens 100 --edits 30 --json bench/results/explore.json
    python bench/explore.py --edits 0 --screenshots docs   # the README's docs/explore-*.png only

Starts the real server (``python -m rnnkit explore RUN --port 0 --no-browser``), opens its page
in Debian's chromium (Playwright, headless) and edits a text of ``--tokens`` words, one word
replaced per edit, in two ways:

- *edit*: one input event, after a quiet spell (the page sends it at once);
- *typing*: a word typed over 4 keystrokes 40 ms apart (the page waits 150 ms after the last
  keystroke, its debounce, then sends one request): latency from the *last* keystroke.

The latency is the page's own record (``window.rnnkitExplore.timings``): ``performance.now()`` in
the ``requestAnimationFrame`` after the DOM update, minus the input event's ``timeStamp``, both on
the page's clock. *text* is the surprisal view; *all* is every view that follows the text
(surprisal, inside-the-cell heatmap, gradient map), the slowest of them; *page* is the page's own
share of *all*: from the last answer's arrival to the paint (decoding JSON, building the DOM,
drawing canvases and SVG). p50 is the median, p95 the
nearest-rank 95th percentile (with 30 edits: the 29th of 30).

Where the time goes, per view (medians over the edits): from the browser's Resource Timing of each
``/api/`` request, the time from sending it to its last byte (*request*) and the answer's size;
from the server's ``Server-Timing`` header, how long it waited for its model (*wait*: another
view held it), was computed (*compute*) and encoded as JSON (*encode*); from the page's own
record, ``JSON.parse`` (*parse*), building the DOM and canvases (*render*) and the wait for the
next frame (*frame*).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
from chromium import CHROMIUM, launch

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_TEXT = (
    "the company said it expects to report a loss for the third quarter because of the strike . "
    "the company said its shares"
)
SUBSTITUTES = ["market", "company", "year", "price", "share", "bank", "government", "week", "stock", "house"]


def start_server(run: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    """The real ``rnnkit explore`` on a free port: the process and its base URL."""
    cmd = [sys.executable, "-m", "rnnkit", "explore", run, "--port", "0", "--no-browser"]
    cmd += [] if threads is None else ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            return proc, found.group(0)
    proc.kill()
    raise SystemExit(f"rnnkit explore printed no address: {''.join(seen)!r}")


def sample_text(tokens: int) -> list[str]:
    """``tokens`` words of PTB's validation text when it is there, else a fixed English passage."""
    ptb = ROOT.parent / "shared" / "data" / "ptb" / "ptb.valid.txt"
    words = ptb.read_text().split()[:tokens] if ptb.exists() else []
    passage = "jane walked into the room . john walked in too . it was late . jane said hi to john ."
    while len(words) < tokens:
        words += passage.split()
    return words[:tokens]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def wait_done(page, version: int) -> dict:
    page.wait_for_function(
        """(v) => { const r = window.rnnkitExplore.timings.find((t) => t.version === v);
                    return r && r.done !== undefined; }""",
        arg=version,
        timeout=60_000,
    )
    return page.evaluate("(v) => window.rnnkitExplore.timings.find((t) => t.version === v)", version)


def set_text(page, text: str) -> int:
    """Put ``text`` in the box with one input event; the version the page gave that edit."""
    return page.evaluate(
        """(text) => { const box = document.getElementById('text'); box.value = text;
                       box.dispatchEvent(new InputEvent('input', {bubbles: true}));
                       return window.rnnkitExplore.version; }""",
        text,
    )


def measure(page, words: list[str], edits: int, typing: bool) -> list[dict]:
    out = []
    for n in range(edits):
        position = (7 * n + 3) % len(words)
        word = SUBSTITUTES[n % len(SUBSTITUTES)]
        page.wait_for_timeout(400)  # a quiet spell: the page's debounce window has passed
        if typing:
            for cut in (1, 2, 3):  # the word's first letters, 40 ms apart, then the whole word
                partial = [*words[:position], word[: max(1, len(word) * cut // 4)], *words[position + 1 :]]
                set_text(page, " ".join(partial))
                page.wait_for_timeout(40)
        words = [*words[:position], word, *words[position + 1 :]]
        record = wait_done(page, set_text(page, " ".join(words)))
        last_answer = max((record.get("arrived") or {"-": record["input"]}).values())
        views = {}
        for key, painted in record["views"].items():  # "slot:view" -> its share of the page's work
            cost = (record.get("cost") or {}).get(key) or {}
            arrived = (record.get("arrived") or {}).get(key)
            if arrived is not None:  # a page without its own record of render: frame includes it
                render = cost.get("render")
                views[key.split(":")[1]] = {
                    "parse": cost.get("parse"),
                    "render": render,
                    "frame": painted - arrived - (render or 0.0),
                }
        out.append(
            {
                "text_ms": record["text"] - record["input"],
                "all_ms": record["done"] - record["input"],
                "page_ms": record["done"] - last_answer,  # the last answer's arrival to the paint
                "views": views,
            }
        )
    return out


def server_share(page) -> dict[str, dict[str, float]]:
    """Per /api/ endpoint, medians over its requests (Resource Timing and the Server-Timing header):
    request sent to last byte, wait, compute, encode (ms) and the answer's size (KB)."""
    entries = page.evaluate(
        """() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'))
                 .map((e) => ({path: new URL(e.name).pathname, request: e.responseEnd - e.requestStart,
                               kb: e.encodedBodySize / 1000,
                               ...Object.fromEntries((e.serverTiming || [])
                                                     .map((s) => [s.name, s.duration]))}))"""
    )
    by: dict[str, list[dict]] = {}
    for entry in entries:
        by.setdefault(entry.pop("path"), []).append(entry)
    return {
        path: {
            name: statistics.median(e[name] for e in rows if e.get(name) is not None)
            for name in ("request", "wait", "compute", "encode", "kb")
            if any(e.get(name) is not None for e in rows)
        }
        for path, rows in sorted(by.items())
    }


def page_share(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per view, medians over the edits of the page's parse, render and frame times (ms)."""
    by: dict[str, dict[str, list[float]]] = {}
    for record in records:
        for view, parts in record["views"].items():
            for name, ms in parts.items():
                if ms is not None:
                    by.setdefault(view, {}).setdefault(name, []).append(ms)
    return {view: {n: statistics.median(v) for n, v in parts.items()} for view, parts in sorted(by.items())}


def screenshots(page, folder: Path) -> list[Path]:
    """The README's pictures of the page, at 1100 px wide: the text with a token's next-token
    tooltip, the heatmap with a span's units, the gradient map with one step's reach."""
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1100, "height": 1000})
    page.wait_for_timeout(600)  # the page redraws its canvases 200 ms after a resize: let it
    page.evaluate("window.scrollTo(0, 0)")
    wait_done(page, set_text(page, SCREENSHOT_TEXT))
    page.locator("#text-panel-0 .tokens .tok").nth(5).hover()
    page.locator("#tooltip").wait_for(state="visible")
    text = folder / "explore-text.png"
    page.screenshot(path=str(text), clip={"x": 0, "y": 0, "width": 1100, "height": 470})
    page.mouse.move(0, 0)
    heat = page.locator("#inside-panel-0 canvas.heatmap")
    heat.scroll_into_view_if_needed()
    box = heat.bounding_box()
    ml, cw, mt = (float(heat.get_attribute(f"data-{k}")) for k in ("ml", "cw", "mt"))
    y = box["y"] + mt + 3
    page.mouse.move(box["x"] + ml + 11.5 * cw, y)  # "third quarter because"
    page.mouse.down()
    page.mouse.move(box["x"] + ml + 13.5 * cw, y)
    page.mouse.up()
    page.locator("#inside-panel-0 .units tr.unit-row").first.wait_for()
    page.wait_for_function("window.rnnkitExplore.settled()")
    page.locator("#inside-panel-0 .units tr.unit-row").nth(1).hover()
    inside = folder / "explore-inside.png"
    page.locator("#inside-section").screenshot(path=str(inside))
    grad = page.locator("#gradient-panel-0 canvas.gradmap")
    grad.scroll_into_view_if_needed()
    box = grad.bounding_box()
    mt, cw = float(grad.get_attribute("data-mt")), float(grad.get_attribute("data-cw"))
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + mt + 21.5 * cw)  # t = 21, "its"
    gradient = folder / "explore-gradient.png"
    page.locator("#gradient-section").screenshot(path=str(gradient))
    for shot in (text, inside, gradient):
        to_palette(shot)
    return [text, inside, gradient]


def to_palette(png: Path) -> None:
    """``png`` with 256 colours at most (a third of the bytes in the repository; the page's flat
    colours survive, a legend's smooth ramp shows steps). Left as it is without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as image:
        shot = image.convert("RGB")
    palette = shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "ptb-3min"))
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--chromium", default=str(CHROMIUM))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "explore.json"))
    parser.add_argument("--url", help="measure a server already running (rnnkit explore RUN) instead")
    parser.add_argument("--threads", type=int, help="the server's --threads (default: its own default)")
    parser.add_argument("--screenshots", type=Path, help="also write the README's explore-*.png here")
    parser.add_argument(
        "--gradient-layer",
        type=int,
        help="the gradient map's layer (default: the page's, the top layer; a layer below costs more)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    words = sample_text(args.tokens)
    proc, url = (None, args.url) if args.url else start_server(args.run, args.threads)
    try:
        with sync_playwright() as pw:
            browser = launch(pw, args.chromium)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.wait_for_function("document.body.dataset.ready === '1' && window.rnnkitExplore.settled()")
            if args.gradient_layer is not None:
                page.locator("#gradient-panel-0 select[aria-label=layer]").select_option(
                    str(args.gradient_layer)
                )
            wait_done(page, set_text(page, " ".join(words)))  # warm-up: the first call loads everything
            page.evaluate("performance.clearResourceTimings()")
            results = {
                "edit": measure(page, words, args.edits, typing=False),
                "typing": measure(page, words, args.edits, typing=True),
            }
            share = server_share(page)
            page_layer = int(page.locator("#gradient-panel-0 select[aria-label=layer]").input_value())
            shots = screenshots(page, args.screenshots) if args.screenshots else []
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    rows = []
    for mode, records in results.items():
        for view in ("text", "all", "page"):
            ms = [r[f"{view}_ms"] for r in records]
            if not ms:
                continue
            rows.append(
                {
                    "mode": mode,
                    "views": view,
                    "p50_ms": statistics.median(ms),
                    "p95_ms": nearest_rank(ms, 0.95),
                    "max_ms": max(ms),
                    "n": len(ms),
                }
            )
    payload = {
        "what": "rnnkit explore: input event -> requestAnimationFrame after the DOM update, in chromium",
        "run": args.run,
        "tokens": len(words),
        "gradient_layer": page_layer,
        "edits": args.edits,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": harness.cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_after": os.getloadavg(),  # other work on the machine skews the figures
        },
        "threads": args.threads,
        "rows": rows,
        "server_median_ms": share,
        "page_median_ms": {mode: page_share(records) for mode, records in results.items()},
        "console_errors": errors,
        "records": results,
    }
    for shot in shots:
        print(f"wrote {shot}")
    if not args.edits:  # pictures only: no figures to record
        return
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"rnnkit explore, {Path(args.run).name}, {len(words)} tokens, {args.edits} edits each, "
        f"gradient map of layer {page_layer}, load average {os.getloadavg()[0]:.2f}"
    )
    print("| mode | views | p50 ms | p95 ms | max ms |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['mode']} | {r['views']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} |")
    print("\nwhere the time goes (medians; request: sent to last byte, in the browser; wait, compute,")
    print("encode: the server's Server-Timing; parse, render, frame: the page, edit mode)")
    print("| view | request ms | wait ms | compute ms | encode ms | KB | parse ms | render ms | frame ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    page_edit = payload["page_median_ms"]["edit"]
    for path, s in share.items():
        view = path.rsplit("/", 1)[-1]
        p = page_edit.get(view, {})
        cells = [s.get(n) for n in ("request", "wait", "compute", "encode", "kb")]
        cells += [p.get(n) for n in ("parse", "render", "frame")]
        print(f"| {view} | " + " | ".join("–" if v is None else f"{v:.0f}" for v in cells) + " |")
    if errors:
        print(f"console errors: {errors}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
