"""How live ``rnnkit explore`` feels: latency measured in the browser, input event to painted update.

    python bench/explore.py                       # runs/ptb-3min (2x200 LSTM), 100 tokens, 30 edits
    python bench/explore.py --run RUN --tokens 100 --edits 30 --json bench/results/explore.json

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
nearest-rank 95th percentile (with 30 edits: the 29th of 30). The server's share comes from the
browser's Resource Timing of each ``/api/`` request (request sent to response read).
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

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SUBSTITUTES = ["market", "company", "year", "price", "share", "bank", "government", "week", "stock", "house"]


def start_server(run: str) -> tuple[subprocess.Popen, str]:
    """The real ``rnnkit explore`` on a free port: the process and its base URL."""
    cmd = [sys.executable, "-m", "rnnkit", "explore", run, "--port", "0", "--no-browser"]
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
        out.append(
            {
                "text_ms": record["text"] - record["input"],
                "all_ms": record["done"] - record["input"],
                "page_ms": record["done"] - last_answer,  # the last answer's arrival to the paint
            }
        )
    return out


def server_share(page) -> dict[str, float]:
    """Median duration (ms) of each /api/ endpoint's requests, from the browser's Resource Timing."""
    entries = page.evaluate(
        """() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'))
                 .map((e) => [new URL(e.name).pathname, e.responseEnd - e.requestStart])"""
    )
    by: dict[str, list[float]] = {}
    for path, ms in entries:
        by.setdefault(path, []).append(ms)
    return {path: statistics.median(v) for path, v in sorted(by.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "ptb-3min"))
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--edits", type=int, default=30)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "explore.json"))
    parser.add_argument("--url", help="measure a server already running (rnnkit explore RUN) instead")
    parser.add_argument(
        "--gradient-layer",
        type=int,
        help="the gradient map's layer (default: the page's, the top layer; a layer below costs more)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    words = sample_text(args.tokens)
    proc, url = (None, args.url) if args.url else start_server(args.run)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
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
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    rows = []
    for mode, records in results.items():
        for view in ("text", "all", "page"):
            ms = [r[f"{view}_ms"] for r in records]
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
        "rows": rows,
        "server_median_ms": share,
        "console_errors": errors,
        "records": results,
    }
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
    print("server (median per request): " + ", ".join(f"{p} {ms:.0f} ms" for p, ms in share.items()))
    if errors:
        print(f"console errors: {errors}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
