/* rnnkit explore: the page. Hand-written, no dependencies, no network beyond the page's own server.
 *
 * Live mode talks to the JSON API of `rnnkit explore RUN` (same origin, 127.0.0.1). Static mode reads a
 * snapshot embedded in <script id="rnnkit-data"> (written by `rnnkit demo`), so the page also works
 * from file:// with the snapshot's texts only. Every view is drawn from the API's numbers as they are:
 * the page computes nothing about the model, it only maps numbers to colours and positions.
 */
"use strict";

(function () {
  const DEBOUNCE_MS = 150;
  const SURPRISAL_MAX = 16; // bits: the colour scale is fixed so that two texts (and two runs) compare
  const TEXT_VIEWS = ["analyze", "inside", "gradient"];
  const SNIPPET_UNITS = 4; // units whose firing elsewhere is shown (the list itself shows them all)
  const LIVE_HINT = "rnnkit explore RUN";

  // ---------------------------------------------------------------- colours
  // Stops are [position 0..1, "#rrggbb"]; scales are fixed so a colour means the same number everywhere.
  const SURPRISAL_STOPS = [[0, "#fbf8ef"], [0.25, "#fde3a7"], [0.5, "#f7a35c"], [0.75, "#d9483b"], [1, "#6e1023"]];
  const SEQUENTIAL_STOPS = [[0, "#fbfbfd"], [0.35, "#9ecae1"], [0.7, "#3576b8"], [1, "#0b2a5b"]];
  const DIVERGING_STOPS = [[0, "#1d5fa6"], [0.25, "#83b4dc"], [0.5, "#f6f6f6"], [0.75, "#eb8f6f"], [1, "#a3162b"]];
  const GRADIENT_STOPS = [[0, "#1a1038"], [0.25, "#3f2d88"], [0.5, "#2f83b5"], [0.75, "#57c29a"], [1, "#f4f2a0"]];
  const NO_PATH = [240, 241, 244, 255];
  const SERIES_COLOURS = ["#2f5fb3", "#d9483b", "#2a9d6f", "#8e5cc2", "#e39a1d", "#4b5262", "#c2417f", "#1b9aaa"];

  function hexRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  const parsedStops = new Map();
  function rampRgb(stops, x) {
    if (!parsedStops.has(stops)) parsedStops.set(stops, stops.map(([p, h]) => [p, hexRgb(h)]));
    const s = parsedStops.get(stops);
    const v = Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
    for (let i = 1; i < s.length; i++) {
      if (v <= s[i][0]) {
        const [p0, c0] = s[i - 1];
        const [p1, c1] = s[i];
        const f = p1 > p0 ? (v - p0) / (p1 - p0) : 0;
        return [0, 1, 2].map((j) => Math.round(c0[j] + f * (c1[j] - c0[j])));
      }
    }
    return s[s.length - 1][1];
  }
  // The heatmaps colour thousands of cells per answer: a table of the ramp at LUT_SIZE points
  // (steps of 0.1% of the range, finer than the eye tells apart) instead of interpolating each.
  const LUT_SIZE = 1024;
  const luts = new Map();
  function rampLut(stops) {
    if (!luts.has(stops)) {
      const lut = new Uint8ClampedArray(3 * LUT_SIZE);
      for (let i = 0; i < LUT_SIZE; i++) lut.set(rampRgb(stops, i / (LUT_SIZE - 1)), 3 * i);
      luts.set(stops, lut);
    }
    return luts.get(stops);
  }
  // Write the colour of ``x`` (0..1 on the ramp) at byte ``o`` of the ImageData ``px``, opaque.
  function paintCell(px, o, lut, x) {
    const v = Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
    const i = 3 * Math.round(v * (LUT_SIZE - 1));
    px[o] = lut[i];
    px[o + 1] = lut[i + 1];
    px[o + 2] = lut[i + 2];
    px[o + 3] = 255;
  }
  const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
  function inkFor(rgb) {
    const lum = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
    return lum < 0.5 ? "#ffffff" : "#1f2430";
  }
  function tagHue(tag) {
    let h = 0;
    for (const ch of tag) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") Object.assign(node.style, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }
  let uid = 0;
  const fmt = (x, d = 3) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : Number(x).toPrecision(d));
  const pct = (p) => (Number.isFinite(p) ? `${(100 * p).toFixed(p >= 0.995 || p < 0.0995 ? 1 : 0)}%` : "–");
  function fmtTick(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace("e+", "e");
    return String(Number(v.toPrecision(3)));
  }
  function message(box, text, kind = "info") {
    box.append(el("div", { class: `msg ${kind}`, text }));
  }
  function clearNode(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ---------------------------------------------------------------- data source: live API or snapshot
  function readSnapshot() {
    const tag = document.getElementById("rnnkit-data");
    if (!tag) return null;
    try {
      const data = JSON.parse(tag.textContent || "null");
      return data && typeof data === "object" ? data : null;
    } catch (err) {
      return { broken: String(err) };
    }
  }
  const SNAPSHOT = readSnapshot();

  class ApiError extends Error {}
  const PARSE_MS = new WeakMap(); // an answer -> the milliseconds JSON.parse took on it (the timings)

  async function liveApi(path, body, signal) {
    let res;
    try {
      res = await fetch(path, body === undefined ? { signal } : {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(`the explore server did not answer (${path}); is \`${LIVE_HINT}\` still running?`);
    }
    let data = null;
    try {
      const text = await res.text();
      const start = performance.now();
      data = JSON.parse(text);
      if (data && typeof data === "object") PARSE_MS.set(data, performance.now() - start);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(`${path}: the server answered ${res.status} without JSON`);
    }
    if (!res.ok || (data && typeof data.error === "string")) {
      throw new ApiError(data && data.error ? String(data.error) : `${path}: HTTP ${res.status}`);
    }
    return data;
  }

  function snapshotApi(path, body) {
    const snap = SNAPSHOT;
    if (path === "/api/runs") return Array.isArray(snap.runs) ? { runs: snap.runs } : snap.runs;
    if (path.startsWith("/api/training")) {
      const id = new URLSearchParams(path.split("?")[1] || "").get("run");
      const t = snap.training && snap.training[id];
      if (!t) throw new ApiError("this snapshot holds no training record for this run");
      return t;
    }
    const texts = snap.texts || [];
    const index = texts.indexOf(body.text);
    if (index < 0) {
      throw new ApiError(`this snapshot holds only its own texts; free text needs the live server: ${LIVE_HINT}`);
    }
    const entry = (snap.results || {})[`${body.run}|${index}`];
    if (!entry) throw new ApiError("this snapshot holds no results for this run and text");
    if (entry.error) throw new ApiError(entry.error);
    if (path === "/api/analyze") return entry.analyze;
    if (path === "/api/inside") {
      const r = (entry.inside || {})[`${body.layer}/${body.direction}/${body.quantity}`];
      if (!r) throw new ApiError(`this snapshot did not record ${body.quantity} of layer ${body.layer}; the live server (${LIVE_HINT}) computes any`);
      return r;
    }
    if (path === "/api/gradient") {
      const r = (entry.gradient || {})[`${body.layer}/${body.direction}`];
      if (!r) throw new ApiError(`this snapshot did not record the gradient of layer ${body.layer}; the live server (${LIVE_HINT}) computes any`);
      return r;
    }
    if (path === "/api/units") {
      const key = `${body.layer}/${body.direction}/${body.quantity}/${body.start}-${body.end}`;
      const r = (entry.units || {})[key];
      if (!r) {
        const recorded = Object.keys(entry.units || {}).map((k) => k.split("/")).filter((k) => k[2] === body.quantity);
        const layers = [...new Set(recorded.map((k) => k[0]))];
        const steps = recorded.filter((k) => k[0] === layers[0]).map((k) => {
          const [a, b] = k[3].split("-").map(Number);
          return b - a === 1 ? `${a}` : `${a}-${b - 1}`;
        });
        const some = layers.length ? ` (this snapshot records the steps ${steps.join(", ")} of layer ${layers[0]}, first direction: select one of those)` : "";
        throw new ApiError(`free span selection needs the live server: ${LIVE_HINT}${some}`);
      }
      return r;
    }
    throw new ApiError(`unknown request ${path}`);
  }

  function api(path, body, signal) {
    if (SNAPSHOT) {
      return new Promise((resolve, reject) => {
        // answer asynchronously, as the live server does, so both modes share one code path
        setTimeout(() => {
          try {
            resolve(snapshotApi(path, body));
          } catch (err) {
            reject(err);
          }
        }, 0);
      });
    }
    return liveApi(path, body, signal);
  }

  // ---------------------------------------------------------------- page state
  const state = {
    runs: [],
    slots: [], // one per run shown: {run, els, inside:{...}, grad:{...}, data:{...}}
    text: "",
    version: 0,
    timer: null,
    lastFire: -Infinity,
    inflight: 0,
  };
  const timings = []; // per edit: {version, input, fired, views: {}, text: t, done: t}
  const byVersion = new Map();
  const controllers = new Map();

  const $ = (id) => document.getElementById(id);
  const pageMsg = $("page-msg");

  function runLabel(r) {
    const cell = r.cell === "elman" && r.nonlinearity ? `${r.nonlinearity} elman` : r.cell;
    const dirs = r.directions === 2 ? "bi-" : "";
    return `${r.name} · ${r.task} · ${dirs}${cell} ${r.layers}×${r.hidden}`;
  }

  function setBusy() {
    document.body.dataset.busy = state.inflight > 0 || state.timer ? "1" : "0";
  }

  // At most one request per (slot, view) at a time. The server cannot stop a computation once
  // asked, so an edit made while one runs does not pile a second one beside it: it waits, and when
  // the running one ends (its answer now stale, so not drawn) the view asks once for the latest.
  const queued = new Map();
  async function request(slot, view, path, body, again) {
    const key = `${slot.index}:${view}`;
    if (controllers.has(key) && again) {
      queued.set(key, again);
      return null;
    }
    const ctrl = new AbortController();
    controllers.set(key, ctrl);
    state.inflight++;
    setBusy();
    let out = null;
    try {
      out = { data: await api(path, body, ctrl.signal) };
    } catch (err) {
      if (!(err && err.name === "AbortError")) {
        out = { error: err instanceof ApiError ? err.message : `unexpected: ${err}` };
      }
    } finally {
      if (controllers.get(key) === ctrl) controllers.delete(key);
      else out = null;
      state.inflight--;
      const next = queued.get(key);
      if (next) {
        queued.delete(key);
        out = null;
        next();
      }
      setBusy();
    }
    return out;
  }

  function cancel(slot, view) {
    const key = `${slot.index}:${view}`;
    queued.delete(key);
    const c = controllers.get(key);
    if (c) {
      controllers.delete(key);
      c.abort();
    }
  }

  // Record, for the edit ``version``, when a view's answer arrived (decoded), how long decoding
  // and building its DOM took, and (in the next animation frame) when it was painted.
  function markPainted(version, slot, view, arrived, cost) {
    const rec = byVersion.get(version);
    if (!rec) return;
    const key = `${slot.index}:${view}`;
    if (arrived !== undefined) {
      rec.arrived = rec.arrived || {};
      rec.arrived[key] = arrived;
    }
    if (cost) {
      rec.cost = rec.cost || {};
      rec.cost[key] = cost;
    }
    requestAnimationFrame(() => {
      const now = performance.now();
      rec.views[`${slot.index}:${view}`] = now;
      if (view === "analyze" && rec.text === undefined) rec.text = now;
      if (rec.done === undefined && Object.keys(rec.views).length >= state.slots.length * TEXT_VIEWS.length) {
        rec.done = now;
      }
    });
  }

  // ---------------------------------------------------------------- text input, debounced
  function onInput(ev) {
    state.text = $("text").value;
    state.version++;
    const rec = { version: state.version, input: ev ? ev.timeStamp : performance.now(), views: {} };
    timings.push(rec);
    byVersion.set(state.version, rec);
    if (timings.length > 500) byVersion.delete(timings.shift().version);
    schedule();
  }

  // The first edit after a quiet spell goes out at once; a burst of edits becomes one request
  // DEBOUNCE_MS after its last keystroke.
  function schedule() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    const quiet = performance.now() - state.lastFire >= DEBOUNCE_MS && state.inflight === 0;
    if (quiet) {
      fire();
    } else {
      state.timer = setTimeout(() => {
        state.timer = null;
        fire();
      }, DEBOUNCE_MS);
    }
    setBusy();
  }

  function fire() {
    state.lastFire = performance.now();
    const rec = byVersion.get(state.version);
    if (rec) rec.fired = state.lastFire;
    for (const slot of state.slots) refreshText(slot);
  }

  function refreshText(slot) {
    const version = state.version;
    if (!state.text.trim()) {
      for (const view of TEXT_VIEWS) cancel(slot, view);
      showEmpty(slot);
      for (const view of TEXT_VIEWS) markPainted(version, slot, view);
      return;
    }
    loadAnalyze(slot, version);
    loadInside(slot, version);
    loadGradient(slot, version);
  }

  function showEmpty(slot) {
    const note = "Type some text above: every view follows it.";
    for (const part of ["text", "inside", "gradient"]) {
      const p = slot.els[part];
      clearNode(p.msgs);
      clearNode(p.body);
      message(p.msgs, note);
    }
    slot.data.analyze = slot.data.inside = slot.data.gradient = null;
  }

  // ---------------------------------------------------------------- panels
  function panelShell(container, slot, part) {
    const r = slot.run;
    const head = el("h3", {}, r.name, el("span", { class: "sub", text: runLabel(r).split(" · ").slice(1).join(" · ") }));
    if (r.training) head.append(el("span", { class: "badge warn", text: "still training: last checkpoint" }));
    const controls = el("div", { class: "controls" });
    const msgs = el("div", { class: "msgs" });
    const body = el("div", { class: "body" });
    const panel = el("div", { class: "panel", id: `${part}-panel-${slot.index}`, "data-run": r.id }, head, controls, msgs, body);
    container.append(panel);
    return { panel, controls, msgs, body };
  }

  function selectControl(label, options, value, onchange) {
    const s = el("select", { "aria-label": label });
    for (const [v, text] of options) s.append(el("option", { value: v, text }));
    s.value = String(value);
    s.addEventListener("change", () => onchange(s.value));
    return el("label", {}, `${label} `, s);
  }

  const QUANTITY_NAMES = {
    h: "h — hidden state", c: "c — cell state", i: "i — input gate", f: "f — forget gate",
    o: "o — output gate", z: "z — update gate", r: "r — reset gate",
  };

  function buildPanels() {
    const ids = ["text-panels", "inside-panels", "gradient-panels", "training-panels"];
    for (const id of ids) {
      clearNode($(id));
      $(id).classList.toggle("two", state.slots.length === 2);
    }
    for (const slot of state.slots) {
      const r = slot.run;
      slot.els = {
        text: panelShell($("text-panels"), slot, "text"),
        inside: panelShell($("inside-panels"), slot, "inside"),
        gradient: panelShell($("gradient-panels"), slot, "gradient"),
        training: panelShell($("training-panels"), slot, "training"),
      };
      const layers = Array.from({ length: r.layers }, (_, i) => [i, `${i}`]);
      const dirs = r.directions === 2 ? [[0, "forward →"], [1, "backward ←"]] : [[0, "forward →"]];
      const quantities = (r.quantities || ["h"]).map((q) => [q, QUANTITY_NAMES[q] || q]);
      const ins = slot.els.inside.controls;
      ins.append(selectControl("layer", layers, slot.inside.layer, (v) => { slot.inside.layer = +v; loadInside(slot); }));
      if (r.directions === 2) {
        ins.append(selectControl("direction", dirs, slot.inside.direction, (v) => { slot.inside.direction = +v; loadInside(slot); }));
      }
      ins.append(selectControl("quantity", quantities, slot.inside.quantity, (v) => { slot.inside.quantity = v; loadInside(slot); }));
      const gr = slot.els.gradient.controls;
      gr.append(selectControl("layer", layers, slot.grad.layer, (v) => { slot.grad.layer = +v; loadGradient(slot); }));
      if (r.directions === 2) {
        gr.append(selectControl("direction", dirs, slot.grad.direction, (v) => { slot.grad.direction = +v; slot.grad.t = null; loadGradient(slot); }));
      }
    }
  }

  function makeSlot(run, index) {
    return {
      run, index, els: null, data: {},
      inside: { layer: 0, direction: 0, quantity: (run.quantities || ["h"]).includes("h") ? "h" : run.quantities[0], span: null, hlUnit: null, units: null },
      // the gradient map opens on the top layer, the one whose h_t the loss E_t reads (the lecture's
      // picture); a layer below costs a sweep through every layer above it on each edit
      grad: { layer: Math.max(0, (run.layers || 1) - 1), direction: 0, t: null },
    };
  }

  function chooseRuns() {
    const a = +$("run-a").value;
    const bValue = $("run-b").value;
    const picked = [state.runs.find((r) => r.id === a)];
    if (bValue !== "" && +bValue !== a) picked.push(state.runs.find((r) => r.id === +bValue));
    state.slots = picked.filter(Boolean).map(makeSlot);
    buildPanels();
    for (const slot of state.slots) loadTraining(slot);
    state.version++;
    const rec = { version: state.version, input: performance.now(), views: {} };
    byVersion.set(state.version, rec);
    fire();
  }

  // ---------------------------------------------------------------- one text view's round trip
  // Ask for ``view`` of the slot's run (at most one request in flight, see request()), then show
  // the answer in the panel ``part`` (``show``) or its error line, and record the timings. Every
  // view that follows the text goes through here. ``reset`` forgets the view's state of the text
  // before (an answer or an error replaces it).
  async function loadView(slot, view, part, path, body, again, show, version, reset) {
    const p = slot.els[part];
    p.panel.classList.add("busy");
    const res = await request(slot, view, path, body, again);
    if (!res) return;
    const arrived = performance.now();
    p.panel.classList.remove("busy");
    clearNode(p.msgs);
    clearNode(p.body);
    if (reset) reset();
    slot.data[view] = res.error ? null : res.data;
    if (res.error) message(p.msgs, res.error, "error");
    else show(res.data);
    const parse = res.data ? PARSE_MS.get(res.data) : undefined;
    markPainted(version, slot, view, arrived, { parse, render: performance.now() - arrived });
  }

  // ---------------------------------------------------------------- text and surprisal
  function loadAnalyze(slot, version = state.version) {
    const body = { run: slot.run.id, text: state.text, k: 5 };
    return loadView(slot, "analyze", "text", "/api/analyze", body, () => loadAnalyze(slot),
      (d) => renderAnalyze(slot, d), version);
  }

  function renderAnalyze(slot, a) {
    const p = slot.els.text;
    for (const note of a.notes || []) message(p.msgs, note);
    const tokens = a.tokens || [];
    if (!tokens.length) {
      message(p.msgs, "No tokens in this text: type some words.");
      return;
    }
    const task = slot.run.task;
    const stats = el("div", { class: "stats" });
    if (task === "lm" && a.ppl !== undefined) stats.append(el("span", {}, "perplexity ", el("b", { class: "ppl", text: fmt(a.ppl, 4) })));
    stats.append(el("span", {}, "tokens ", el("b", { text: tokens.length })));
    const unknown = a.unknown || [];
    stats.append(el("span", { class: "oov-list" }, "out of vocabulary ", el("b", { text: unknown.length }),
      unknown.length ? `: ${unknown.slice(0, 12).join(", ")}${unknown.length > 12 ? " …" : ""}` : ""));
    p.body.append(stats);
    if (task === "lm") p.body.append(surprisalLegend());
    const box = el("div", { class: "tokens" });
    tokens.forEach((tok, i) => box.append(tokenSpan(slot, a, tok, i)));
    p.body.append(box);
    if (task === "classify") renderClasses(p.body, a);
  }

  function tokenSpan(slot, a, tok, i) {
    const task = slot.run.task;
    const span = el("span", { class: "tok", tabindex: 0, "data-i": i, text: tok });
    if (a.oov && a.oov[i]) span.classList.add("oov");
    if (task === "lm") {
      const bits = a.surprisal_bits ? a.surprisal_bits[i] : null;
      if (bits === null || bits === undefined) {
        span.classList.add("nocontext");
      } else {
        const rgb = rampRgb(SURPRISAL_STOPS, bits / SURPRISAL_MAX);
        span.style.backgroundColor = css(rgb);
        span.style.color = inkFor(rgb);
        span.dataset.bits = String(bits);
      }
    } else if (task === "tag" && a.tags) {
      clearNode(span);
      span.classList.add("tagged");
      const prob = a.tag_probs ? a.tag_probs[i] : null;
      const hue = tagHue(a.tags[i]);
      const light = 93 - 18 * (prob === null ? 0 : Math.max(0, Math.min(1, prob)));
      span.style.backgroundColor = `hsl(${hue}, 60%, ${light}%)`;
      span.append(el("span", { class: "word", text: tok }), el("span", { class: "tag", text: a.tags[i] }),
        el("span", { class: "tagp", text: pct(prob) }));
      span.dataset.tag = a.tags[i];
    }
    const show = () => showTooltip(span, tooltipFor(slot, a, i));
    span.addEventListener("mouseenter", show);
    span.addEventListener("focus", show);
    span.addEventListener("mouseleave", hideTooltip);
    span.addEventListener("blur", hideTooltip);
    return span;
  }

  function probTable(rows) {
    const table = el("table");
    const top = Math.max(...rows.map((r) => r[1]), 1e-12);
    for (const [name, p] of rows) {
      table.append(el("tr", {}, el("td", { text: name }), el("td", { class: "p", text: pct(p) }),
        el("td", { style: { width: "4rem" } }, el("div", { class: "bar", style: { width: `${Math.max(2, 100 * p / top)}%` } }))));
    }
    return table;
  }

  function tooltipFor(slot, a, i) {
    const tok = a.tokens[i];
    const box = el("div");
    box.append(el("div", { class: "tt-head", text: tok }));
    const task = slot.run.task;
    if (task === "lm") {
      const bits = a.surprisal_bits ? a.surprisal_bits[i] : null;
      box.append(el("div", { class: "tt-sub", text: bits === null || bits === undefined
        ? "first token: no context to predict it"
        : `surprisal ${fmt(bits, 3)} bits (p = ${fmt(2 ** -bits, 2)})${a.oov && a.oov[i] ? " · out of vocabulary" : ""}` }));
      const topk = (a.topk || [])[i] || [];
      if (topk.length) {
        box.append(el("div", { class: "tt-sub", text: "next token after it:" }), probTable(topk));
      }
    } else if (task === "tag") {
      box.append(el("div", { class: "tt-sub", text: `tag ${a.tags[i]} (${pct(a.tag_probs[i])})` }));
      const topk = (a.tag_topk || [])[i] || [];
      if (topk.length) box.append(probTable(topk));
    } else if (task === "classify") {
      const probs = (a.over_time || [])[i];
      if (probs) {
        box.append(el("div", { class: "tt-sub", text: `classes on the first ${i + 1} token${i ? "s" : ""}:` }));
        box.append(probTable(a.classes.map((c, j) => [c, probs[j]])));
      }
    }
    return box;
  }

  const tooltip = $("tooltip");
  function showTooltip(anchor, content) {
    clearNode(tooltip);
    tooltip.append(content);
    tooltip.hidden = false;
    const r = anchor.getBoundingClientRect();
    const w = tooltip.offsetWidth;
    const h = tooltip.offsetHeight;
    let x = Math.min(window.innerWidth - w - 8, Math.max(8, r.left));
    let y = r.bottom + 6;
    if (y + h > window.innerHeight - 8) y = Math.max(8, r.top - h - 6);
    tooltip.style.left = `${x}px`;
    tooltip.style.top = `${y}px`;
  }
  function hideTooltip() {
    tooltip.hidden = true;
  }

  function gradientBar(stops, width, height) {
    const id = `lg${uid++}`;
    const s = svg("svg", { width, height, class: "bar" });
    const lg = svg("linearGradient", { id, x1: 0, x2: 1, y1: 0, y2: 0 });
    for (let i = 0; i <= 10; i++) lg.append(svg("stop", { offset: i / 10, "stop-color": css(rampRgb(stops, i / 10)) }));
    const defs = svg("defs");
    defs.append(lg);
    s.append(defs, svg("rect", { x: 0, y: 0, width, height: height - 12, fill: `url(#${id})`, stroke: "#c8ccd4" }));
    return s;
  }

  function legend(label, stops, ticks, width = 220) {
    const bar = gradientBar(stops, width, 26);
    for (const [pos, text] of ticks) {
      const x = pos * width;
      bar.append(svg("line", { x1: x, x2: x, y1: 14, y2: 17, stroke: "#6b7280" }));
      bar.append(svg("text", { x, y: 26, "text-anchor": pos === 0 ? "start" : pos === 1 ? "end" : "middle", "font-size": 10, fill: "#4b5262" }, text));
    }
    return el("div", { class: "legend" }, el("span", { class: "lab", text: label }), bar);
  }

  function surprisalLegend() {
    const ticks = [0, 4, 8, 12, 16].map((b) => [b / SURPRISAL_MAX, b === SURPRISAL_MAX ? `${b}+` : `${b}`]);
    const l = legend("surprisal −log₂ p (bits)", SURPRISAL_STOPS, ticks);
    l.classList.add("surprisal-legend");
    l.append(el("span", { class: "lab" }, el("span", { class: "tok nocontext", text: "first" }), " no context · ",
      el("span", { class: "tok oov", text: "oov" }), " out of vocabulary"));
    return l;
  }

  function renderClasses(body, a) {
    const classes = a.classes || [];
    const probs = a.probs || [];
    const best = probs.indexOf(Math.max(...probs));
    const box = el("div", { class: "classes" });
    classes.forEach((c, j) => {
      box.append(el("div", { class: `cls${j === best ? " top" : ""}`, "data-class": c },
        el("span", { class: "name", text: c }),
        el("span", { class: "track" }, el("span", { class: "fill", style: { display: "block", width: `${100 * probs[j]}%`, background: SERIES_COLOURS[j % SERIES_COLOURS.length] } })),
        el("span", { class: "v", text: pct(probs[j]) })));
    });
    body.append(el("h4", { text: "class probabilities" }), box);
    const over = a.over_time || [];
    if (over.length) {
      const x = over.map((_, t) => t + 1);
      const chart = lineChart({
        title: "over the sentence (prefix of t tokens)", xLabel: "prefix length t", yLabel: "probability",
        yMin: 0, yMax: 1, width: 420, height: 170, integerX: true,
        series: classes.map((c, j) => ({ label: c, x, y: over.map((row) => row[j]), colour: SERIES_COLOURS[j % SERIES_COLOURS.length] })),
      });
      chart.classList.add("over-time");
      body.append(chart);
    }
  }

  // ---------------------------------------------------------------- inside the cell
  function loadInside(slot, version = state.version) {
    if (!state.text.trim()) return;
    const { layer, direction, quantity } = slot.inside;
    const body = { run: slot.run.id, text: state.text, layer, direction, quantity };
    return loadView(slot, "inside", "inside", "/api/inside", body, () => loadInside(slot),
      () => renderInside(slot), version, () => Object.assign(slot.inside, { span: null, units: null, hlUnit: null }));
  }

  function insideScale(range) {
    const [lo, hi] = range;
    const diverging = lo < 0 && hi > 0;
    const stops = diverging ? DIVERGING_STOPS : SEQUENTIAL_STOPS;
    return { lo, hi, stops };
  }

  function heatGeometry(panel, T, H) {
    const avail = Math.max(200, (panel.clientWidth || 600) - 8);
    const ml = 40;
    const cw = Math.max(3, Math.min(36, Math.floor((avail - ml) / Math.max(1, T))));
    const rh = Math.max(1, Math.min(8, Math.floor(360 / Math.max(1, H))));
    return { ml, mt: 6, cw, rh, width: ml + cw * T + 2, height: 6 + rh * H + 14 };
  }

  function renderInside(slot) {
    const p = slot.els.inside;
    const d = slot.data.inside;
    const values = d.values || [];
    const T = values.length;
    const H = T ? values[0].length : 0;
    if (!T || !H) {
      message(p.msgs, "No steps to show for this text.");
      return;
    }
    const sc = insideScale(d.range || [0, 1]);
    const ticks = [[0, fmtTick(sc.lo)], [1, fmtTick(sc.hi)]];
    if (sc.lo < 0 && sc.hi > 0) ticks.splice(1, 0, [(0 - sc.lo) / (sc.hi - sc.lo), "0"]);
    else ticks.splice(1, 0, [0.5, fmtTick((sc.lo + sc.hi) / 2)]);
    p.body.append(legend(`${d.label || slot.inside.quantity} (fixed range)`, sc.stops, ticks));
    const g = heatGeometry(p.panel, T, H);
    // the image: one pixel per (unit, step), scaled up without smoothing
    const img = document.createElement("canvas");
    img.width = T;
    img.height = H;
    const ictx = img.getContext("2d");
    const data = ictx.createImageData(T, H);
    const lut = rampLut(sc.stops);
    const span = sc.hi - sc.lo || 1;
    for (let t = 0; t < T; t++) {
      const row = values[t];
      for (let u = 0; u < H; u++) paintCell(data.data, 4 * (u * T + t), lut, (row[u] - sc.lo) / span);
    }
    ictx.putImageData(data, 0, 0);
    const axis = tokenAxis(d.tokens || [], g, (i) => slot.inside.span && i >= slot.inside.span[0] && i < slot.inside.span[1]);
    const canvas = el("canvas", { class: "heatmap", "aria-label": "units by time heatmap" });
    const plot = el("div", { class: "plot" }, axis, canvas);
    p.body.append(plot);
    const info = el("div", { class: "hint heat-info", text: `${H} units × ${T} steps · drag across steps to select a span` });
    p.body.append(info);
    const unitsBox = el("div", { class: "units-out" });
    p.body.append(unitsBox);
    Object.assign(canvas.dataset, { ml: g.ml, mt: g.mt, cw: g.cw, rh: g.rh, steps: T, units: H });
    slot.inside.view = { g, img, canvas, axis, T, H, unitsBox, info };
    drawInside(slot);
    attachSpanDrag(slot, canvas, axis);
  }

  function tokenAxis(tokens, g, isOn) {
    const height = 56;
    const s = svg("svg", { class: "axis-tokens", width: g.width, height });
    const step = g.cw < 7 ? Math.ceil(7 / g.cw) : 1; // label every n-th token when columns are narrow
    tokens.forEach((tok, i) => {
      const x = g.ml + (i + 0.5) * g.cw;
      const label = tok.length > 12 ? `${tok.slice(0, 11)}…` : tok;
      const t = svg("text", { x: 0, y: 0, transform: `translate(${x + 3},${height - 4}) rotate(-55)`, "data-i": i, class: isOn(i) ? "on" : "" }, i % step === 0 ? label : "");
      t.append(svg("title", {}, `${i}: ${tok}`));
      s.append(t);
    });
    return s;
  }

  function setupCanvas(canvas, width, height) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  function drawInside(slot) {
    const v = slot.inside.view;
    const { g, img, canvas, T, H } = v;
    const ctx = setupCanvas(canvas, g.width, g.height);
    ctx.clearRect(0, 0, g.width, g.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, g.ml, g.mt, g.cw * T, g.rh * H);
    ctx.fillStyle = "#4b5262";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = H <= 16 ? 4 : H <= 64 ? 16 : 50;
    for (let u = 0; u < H; u += every) ctx.fillText(`u${u}`, g.ml - 4, g.mt + (u + 0.5) * g.rh);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText("time step →", g.ml + (g.cw * T) / 2, g.mt + g.rh * H + 2);
    const span = slot.inside.span;
    if (span) {
      ctx.fillStyle = "rgba(255, 255, 255, 0.55)";
      ctx.fillRect(g.ml, g.mt, span[0] * g.cw, g.rh * H);
      ctx.fillRect(g.ml + span[1] * g.cw, g.mt, (T - span[1]) * g.cw, g.rh * H);
      ctx.strokeStyle = "#f2b01e";
      ctx.lineWidth = 2;
      ctx.strokeRect(g.ml + span[0] * g.cw, g.mt, (span[1] - span[0]) * g.cw, g.rh * H);
    }
    for (const u of (slot.inside.units || []).map((x) => x.unit)) {
      const hl = u === slot.inside.hlUnit;
      ctx.fillStyle = hl ? "#b36b00" : "#f2b01e";
      ctx.fillRect(g.ml - 3, g.mt + u * g.rh, 3, Math.max(g.rh, 2));
      if (hl) {
        ctx.strokeStyle = "#b36b00";
        ctx.lineWidth = 1;
        ctx.strokeRect(g.ml - 0.5, g.mt + u * g.rh - 0.5, g.cw * T + 1, Math.max(g.rh, 1) + 1);
      }
    }
  }

  function attachSpanDrag(slot, canvas, axis) {
    let start = null;
    const colAt = (ev, node) => {
      const r = node.getBoundingClientRect();
      const { g, T } = slot.inside.view;
      return Math.max(0, Math.min(T - 1, Math.floor((ev.clientX - r.left - g.ml) / g.cw)));
    };
    const update = (a, b) => {
      slot.inside.span = [Math.min(a, b), Math.max(a, b) + 1];
      drawInside(slot);
      for (const t of axis.querySelectorAll("text")) {
        const i = +t.getAttribute("data-i");
        t.setAttribute("class", i >= slot.inside.span[0] && i < slot.inside.span[1] ? "on" : "");
      }
    };
    for (const node of [canvas, axis]) {
      node.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        start = colAt(ev, node);
        slot.inside.units = null;
        update(start, start);
        const move = (e) => update(start, colAt(e, node));
        const up = (e) => {
          window.removeEventListener("mousemove", move);
          window.removeEventListener("mouseup", up);
          update(start, colAt(e, node));
          start = null;
          loadUnits(slot);
        };
        window.addEventListener("mousemove", move);
        window.addEventListener("mouseup", up);
      });
    }
  }

  async function loadUnits(slot) {
    const v = slot.inside.view;
    const [startStep, endStep] = slot.inside.span;
    clearNode(v.unitsBox);
    v.unitsBox.append(el("div", { class: "hint", text: `finding units for steps ${startStep}–${endStep - 1} …` }));
    const { layer, direction, quantity } = slot.inside;
    const res = await request(slot, "units", "/api/units", {
      run: slot.run.id, text: state.text, layer, direction, quantity, start: startStep, end: endStep,
    }, () => loadUnits(slot));
    if (!res) return;
    clearNode(v.unitsBox);
    if (res.error) {
      message(v.unitsBox, res.error, SNAPSHOT ? "limit" : "error");
      return;
    }
    slot.inside.units = res.data.units || [];
    renderUnits(slot, res.data);
    drawInside(slot);
  }

  function renderUnits(slot, d) {
    const v = slot.inside.view;
    const box = v.unitsBox;
    const tokens = slot.data.inside.tokens || [];
    const [a, b] = slot.inside.span;
    box.append(el("h4", { text: `units on inside “${tokens.slice(a, b).join(" ")}” and off around it` }));
    for (const note of d.notes || []) message(box, note);
    const units = d.units || [];
    if (!units.length) {
      message(box, "No unit is more on inside this span than around it.");
    } else {
      const top = Math.max(...units.map((u) => Math.abs(u.score)), 1e-12);
      const table = el("table", { class: "units" }, el("tr", {}, ...["unit", "inside", "outside", "score", ""].map((h) => el("th", { text: h }))));
      for (const u of units) {
        const row = el("tr", { class: "unit-row", "data-unit": u.unit },
          el("td", { text: `u${u.unit}` }), el("td", { text: fmt(u.inside, 3) }), el("td", { text: fmt(u.outside, 3) }),
          el("td", { text: fmt(u.score, 3) }),
          el("td", { style: { width: "6rem" } }, el("div", { class: "bar", style: { height: "0.5rem", background: "#f2b01e", width: `${Math.max(2, 100 * Math.abs(u.score) / top)}%` } })));
        row.addEventListener("mouseenter", () => { slot.inside.hlUnit = u.unit; row.classList.add("hl"); drawInside(slot); });
        row.addEventListener("mouseleave", () => { slot.inside.hlUnit = null; row.classList.remove("hl"); drawInside(slot); });
        table.append(row);
      }
      box.append(table);
    }
    const elsewhere = (d.elsewhere || []).slice(0, SNIPPET_UNITS);
    if (elsewhere.length) {
      const which = (d.elsewhere || []).length > SNIPPET_UNITS ? `the first ${SNIPPET_UNITS} of these units` : "these units";
      box.append(el("h4", { text: `where ${which} fire in the run's validation text` }));
      const sn = el("div", { class: "snippets" });
      for (const e of elsewhere) {
        for (const s of e.snippets || []) {
          const line = el("div", { class: "snippet", "data-unit": e.unit }, el("span", { class: "u", text: `u${e.unit}` }));
          (s.tokens || []).forEach((tok, i) => {
            line.append(el("span", { class: s.on && s.on[i] ? "fire" : "", text: tok }), " ");
          });
          sn.append(line);
        }
      }
      box.append(sn);
    }
  }

  // ---------------------------------------------------------------- gradient flow
  function loadGradient(slot, version = state.version) {
    if (!state.text.trim()) return;
    const { layer, direction } = slot.grad;
    const body = { run: slot.run.id, text: state.text, layer, direction };
    return loadView(slot, "gradient", "gradient", "/api/gradient", body, () => loadGradient(slot),
      () => renderGradient(slot), version);
  }

  function logRange(map) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of map) {
      for (const v of row) {
        if (v !== null && v > 0 && Number.isFinite(v)) {
          const l = Math.log10(v);
          if (l < lo) lo = l;
          if (l > hi) hi = l;
        }
      }
    }
    if (!Number.isFinite(lo)) return [0, 1];
    if (hi - lo < 1e-9) return [lo - 0.5, hi + 0.5];
    return [lo, hi];
  }

  function renderGradient(slot) {
    const p = slot.els.gradient;
    const d = slot.data.gradient;
    const map = d.map || [];
    const T = map.length;
    if (!T) {
      message(p.msgs, "No steps to show for this text.");
      return;
    }
    const backward = d.direction === "backward";
    const [lo, hi] = logRange(map);
    const pos = (v) => (v === null || !(v > 0) ? 0 : (Math.log10(v) - lo) / (hi - lo));
    const ticks = logTicks(lo, hi, 6).map((v) => [(Math.log10(v) - lo) / (hi - lo), fmtTick(v)]);
    p.body.append(legend("‖∂E_t/∂h_k‖ (log scale)", GRADIENT_STOPS, ticks));
    const avail = Math.max(200, (p.panel.clientWidth || 600) - 8);
    const ml = 40;
    const side = Math.min(avail - ml - 4, 440); // a square map: at most about as tall as the heatmap
    const cell = Math.max(2, Math.min(16, Math.floor(side / T)));
    const g = { ml, mt: 16, cw: cell, width: ml + cell * T + 4, height: 16 + cell * T + 4 };
    const img = document.createElement("canvas");
    img.width = T;
    img.height = T;
    const ictx = img.getContext("2d");
    const data = ictx.createImageData(T, T);
    const lut = rampLut(GRADIENT_STOPS);
    const px = data.data;
    for (let t = 0; t < T; t++) {
      const row = map[t];
      for (let k = 0; k < T; k++) {
        const v = row[k];
        const o = 4 * (t * T + k);
        if (v === null || v === undefined) {
          px.set(NO_PATH, o); // grey: no path from E_t to h_k
        } else {
          paintCell(px, o, lut, pos(v));
        }
      }
    }
    ictx.putImageData(data, 0, 0);
    const canvas = el("canvas", { class: "gradmap", "aria-label": "gradient map, rows t, columns k" });
    const plot = el("div", { class: "plot" }, canvas);
    const reach = el("div", { class: "reach" });
    const charts = el("div", { class: "charts" });
    const how = backward ? "backward direction, measured toward the future" : "forward direction";
    const carried = d.precision === "float32" ? " · float32 sweep (within ~1e-6 of float64)" : "";
    p.body.append(el("div", { class: "hint", text: `rows: the loss E_t at step t · columns: the hidden state h_k (${how}) · grey: no path · click a row${carried}` }), plot, reach, charts);
    Object.assign(canvas.dataset, { ml: g.ml, mt: g.mt, cw: g.cw, steps: T });
    slot.grad.view = { g, img, canvas, reach, T, pos, backward };
    if (slot.grad.t === null || slot.grad.t >= T) {
      const rows = map.map((row, t) => (row.some((v) => v !== null && v !== undefined) ? t : -1)).filter((t) => t >= 0);
      slot.grad.t = rows.length ? (backward ? rows[0] : rows[rows.length - 1]) : 0;
    }
    drawGradient(slot);
    renderReach(slot);
    canvas.addEventListener("click", (ev) => {
      const r = canvas.getBoundingClientRect();
      const t = Math.floor((ev.clientY - r.top - g.mt) / g.cw);
      if (t >= 0 && t < T) {
        slot.grad.t = t;
        drawGradient(slot);
        renderReach(slot);
      }
    });
    const dist = (d.by_distance || []).map((_, i) => i);
    const series = [{ label: "measured mean", x: dist, y: d.by_distance || [], colour: "#2f5fb3" }];
    if (d.bound) series.push({ label: "bound (β_W β_h)^d", x: d.bound.map((_, i) => i), y: d.bound, colour: "#d9483b", dash: "5 4" });
    const chart = lineChart({
      title: "mean ‖∂E_t/∂h_k‖ by distance d = |t − k|", xLabel: "distance d (steps)", yLabel: "norm", logY: true,
      width: 420, height: 200, series, integerX: true,
    });
    chart.classList.add("by-distance");
    charts.append(chart);
  }

  function drawGradient(slot) {
    const { g, img, canvas, T } = slot.grad.view;
    const ctx = setupCanvas(canvas, g.width, g.height);
    ctx.clearRect(0, 0, g.width, g.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, g.ml, g.mt, g.cw * T, g.cw * T);
    ctx.fillStyle = "#4b5262";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillText("t ↓", g.ml - 4, g.mt + 6);
    ctx.textAlign = "left";
    ctx.fillText("k →", g.ml, 7);
    const every = T <= 20 ? 5 : T <= 60 ? 10 : 25;
    ctx.textAlign = "right";
    for (let t = every; t < T; t += every) ctx.fillText(String(t), g.ml - 4, g.mt + (t + 0.5) * g.cw);
    const t = slot.grad.t;
    if (t !== null) {
      ctx.strokeStyle = "#f2b01e";
      ctx.lineWidth = 2;
      ctx.strokeRect(g.ml - 1, g.mt + t * g.cw - 1, g.cw * T + 2, g.cw + 2);
    }
  }

  function renderReach(slot) {
    const { reach, pos } = slot.grad.view;
    const d = slot.data.gradient;
    const t = slot.grad.t;
    clearNode(reach);
    const row = d.map[t] || [];
    const tokens = d.tokens || [];
    reach.append(el("h4", { text: `how much gradient from step t = ${t} (“${tokens[t] || ""}”) reaches each word` }));
    if (!row.some((v) => v !== null && v !== undefined)) {
      message(reach, `step ${t} has no loss to send back (e.g. the last token of a language model predicts nothing here)`);
    }
    const box = el("div", { class: "tokens reach-tokens" });
    tokens.forEach((tok, k) => {
      const v = row[k];
      const span = el("span", { class: "tok reach", tabindex: 0, "data-k": k, text: tok, title: v === null || v === undefined ? "not reached from t" : `‖∂E_${t}/∂h_${k}‖ = ${fmt(v, 3)}` });
      if (v === null || v === undefined) {
        span.classList.add("unreached");
      } else {
        const rgb = rampRgb(GRADIENT_STOPS, pos(v));
        span.style.backgroundColor = css(rgb);
        span.style.color = inkFor(rgb);
        span.dataset.norm = String(v);
      }
      if (k === t) span.classList.add("from");
      span.addEventListener("click", () => {
        slot.grad.t = k;
        drawGradient(slot);
        renderReach(slot);
      });
      box.append(span);
    });
    reach.append(box);
  }

  // ---------------------------------------------------------------- training
  function loadTraining(slot) {
    const path = `/api/training?run=${encodeURIComponent(slot.run.id)}`;
    return loadView(slot, "training", "training", path, undefined, () => loadTraining(slot), (d) => renderTraining(slot, d));
  }

  function renderTraining(slot, d) {
    const p = slot.els.training;
    const charts = el("div", { class: "charts" });
    const metric = d.metric || "metric";
    const names = { ppl: "perplexity", accuracy: "accuracy", f1: "span F1" };
    const epochs = d.epochs || [];
    if (epochs.length) {
      charts.append(lineChart({
        title: `${names[metric] || metric} per epoch`, xLabel: "epoch", yLabel: names[metric] || metric,
        logY: metric === "ppl", width: 300, height: 180, points: true, integerX: true,
        series: [
          { label: "train", x: epochs, y: d.train || [], colour: "#8e9bb3" },
          { label: "valid", x: epochs, y: d.valid || [], colour: "#2f5fb3" },
        ],
      }));
    }
    const steps = d.steps || [];
    if (steps.length && (d.grad_norm || []).length) {
      const hlines = Number.isFinite(d.clip) ? [{ y: d.clip, label: `clip ${fmtTick(d.clip)}`, colour: "#d9483b" }] : [];
      charts.append(lineChart({
        title: "gradient norm before clipping", xLabel: "step", yLabel: "‖g‖", logY: true, width: 300, height: 180,
        series: [{ label: "‖g‖", x: steps, y: d.grad_norm, colour: "#2a9d6f" }], hlines,
        marks: (d.skipped || []).map((s) => ({ x: s, label: `skipped step ${s}` })),
      }));
    }
    if (steps.length && (d.lr || []).length) {
      const lr = d.lr.filter((v) => v > 0);
      const spread = lr.length ? Math.max(...lr) / Math.min(...lr) : 1;
      charts.append(lineChart({
        title: "learning rate", xLabel: "step", yLabel: "lr", logY: spread > 20, width: 300, height: 180,
        series: [{ label: "lr", x: steps, y: d.lr, colour: "#8e5cc2" }],
      }));
    }
    if (!charts.childNodes.length) message(p.msgs, "This run has logged no training record yet.");
    const skipped = d.skipped || [];
    p.body.append(charts, el("div", { class: "hint", text: skipped.length
      ? `the guard skipped ${skipped.length} step${skipped.length > 1 ? "s" : ""} (non-finite loss or gradient): ${skipped.slice(0, 10).join(", ")}${skipped.length > 10 ? " …" : ""}`
      : "the guard skipped no step" }));
  }

  // ---------------------------------------------------------------- line charts (SVG)
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = 10 ** Math.floor(Math.log10(raw));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }
  function linearTicks(lo, hi, count) {
    const step = niceStep(hi - lo || 1, count);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  /* Ticks for a log axis spanning log10 values lo..hi: powers of ten, with 2 and 5 between them
   * when the span is short, at most about ``count`` of them. */
  function logTicks(lo, hi, count) {
    let out = [];
    const mult = hi - lo < 1.5 ? [1, 2, 5] : [1];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const k of mult) {
        const v = k * 10 ** e;
        if (Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9) out.push(Number(v.toPrecision(6)));
      }
    }
    if (out.length > count) out = out.filter((_, i) => i % Math.ceil(out.length / count) === 0);
    if (out.length < 2) out = [...new Set([Number((10 ** lo).toPrecision(2)), ...out, Number((10 ** hi).toPrecision(2))])];
    return out;
  }

  /* A small line chart: series [{label, x, y, colour, dash}], optional log y, horizontal lines
   * [{y, label, colour}], vertical marks [{x, label}]. Nulls and (on a log axis) non-positive values
   * break the line instead of being drawn. */
  function lineChart(o) {
    const W = o.width || 360;
    const H = o.height || 200;
    const keyed = o.series.length > 1;
    const m = { l: 48, r: 10, t: keyed ? 34 : 22, b: 34 };
    const logY = !!o.logY;
    const ok = (v) => v !== null && v !== undefined && Number.isFinite(v) && (!logY || v > 0);
    const ty = (v) => (logY ? Math.log10(v) : v);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of o.series) {
      s.x.forEach((x, i) => {
        if (!ok(s.y[i])) return;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, ty(s.y[i])); y1 = Math.max(y1, ty(s.y[i]));
      });
    }
    for (const h of o.hlines || []) if (ok(h.y)) { y0 = Math.min(y0, ty(h.y)); y1 = Math.max(y1, ty(h.y)); }
    for (const mk of o.marks || []) { x0 = Math.min(x0, mk.x); x1 = Math.max(x1, mk.x); }
    const root = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    root.append(svg("text", { x: m.l, y: 13, class: "title" }, o.title || ""));
    if (!Number.isFinite(x0) || !Number.isFinite(y0)) {
      root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data"));
      return root;
    }
    if (o.yMin !== undefined) y0 = ty(o.yMin);
    if (o.yMax !== undefined) y1 = ty(o.yMax);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 - y0 < 1e-12) { y0 -= logY ? 0.5 : Math.abs(y0) * 0.1 || 1; y1 += logY ? 0.5 : Math.abs(y1) * 0.1 || 1; }
    else if (o.yMin === undefined) {
      const pad = 0.05 * (y1 - y0);
      y0 -= pad; y1 += pad;
    }
    const px = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
    const py = (v) => H - m.b - ((ty(v) - y0) / (y1 - y0)) * (H - m.t - m.b);
    // y ticks: powers of ten on a log axis (1-2-5 within a decade when the range is short)
    const yt = logY ? logTicks(y0, y1, 7) : linearTicks(y0, y1, 4);
    for (const v of yt) {
      const y = py(v);
      root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, class: "grid" }));
      root.append(svg("text", { x: m.l - 4, y: y + 3, "text-anchor": "end" }, fmtTick(v)));
    }
    const xt = linearTicks(x0, x1, 5).filter((v) => !o.integerX || Number.isInteger(v));
    for (const v of xt) {
      const x = px(v);
      root.append(svg("line", { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 3, class: "axis" }));
      root.append(svg("text", { x, y: H - m.b + 13, "text-anchor": "middle" }, fmtTick(v)));
    }
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis" }));
    root.append(svg("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: "axis" }));
    root.append(svg("text", { x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle" }, o.xLabel || ""));
    root.append(svg("text", { x: 10, y: (m.t + H - m.b) / 2, transform: `rotate(-90 10 ${(m.t + H - m.b) / 2})`, "text-anchor": "middle" }, o.yLabel || ""));
    for (const h of o.hlines || []) {
      if (!ok(h.y)) continue;
      const y = py(h.y);
      root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, stroke: h.colour || "#d9483b", "stroke-dasharray": "4 3", class: "hline" }));
      root.append(svg("text", { x: W - m.r - 2, y: y - 3, "text-anchor": "end", fill: h.colour || "#d9483b" }, h.label || ""));
    }
    for (const mk of o.marks || []) {
      const x = px(mk.x);
      const tick = svg("line", { x1: x, x2: x, y1: H - m.b - 8, y2: H - m.b, stroke: "#b42318", "stroke-width": 2, class: "mark" });
      tick.append(svg("title", {}, mk.label || ""));
      root.append(tick);
    }
    o.series.forEach((s, si) => {
      let dpath = "";
      let pen = false;
      s.x.forEach((x, i) => {
        if (!ok(s.y[i])) { pen = false; return; }
        dpath += `${pen ? "L" : "M"}${px(x).toFixed(1)},${py(s.y[i]).toFixed(1)}`;
        pen = true;
      });
      const colour = s.colour || SERIES_COLOURS[si % SERIES_COLOURS.length];
      root.append(svg("path", { d: dpath, fill: "none", stroke: colour, "stroke-width": 1.6, "stroke-dasharray": s.dash || null, class: "series" }));
      if (o.points) {
        s.x.forEach((x, i) => {
          if (ok(s.y[i])) root.append(svg("circle", { cx: px(x), cy: py(s.y[i]), r: 2.2, fill: colour }));
        });
      }
    });
    // legend: one line under the title
    if (keyed) {
      let lx = m.l;
      for (const s of o.series) {
        root.append(svg("line", { x1: lx, x2: lx + 14, y1: 23, y2: 23, stroke: s.colour, "stroke-width": 2, "stroke-dasharray": s.dash || null }));
        const label = svg("text", { x: lx + 18, y: 26 }, s.label);
        root.append(label);
        lx += 26 + 6.2 * s.label.length;
      }
    }
    return root;
  }

  // ---------------------------------------------------------------- start
  async function start() {
    window.addEventListener("error", (ev) => message(pageMsg, `page error: ${ev.message}`, "error"));
    if (SNAPSHOT && SNAPSHOT.broken) {
      message(pageMsg, `the embedded snapshot could not be read (${SNAPSHOT.broken}); run \`${LIVE_HINT}\` instead`, "error");
      return;
    }
    const mode = $("mode");
    const textBox = $("text");
    if (SNAPSHOT) {
      document.body.dataset.mode = "static";
      mode.append("static snapshot · free text needs the live server: ", el("code", { text: LIVE_HINT }));
      message(pageMsg, `This is a static snapshot: it shows only the texts recorded in it (choose one on the right of the text box). Free text and free span selection need the live server: ${LIVE_HINT}`);
      const pick = $("text-pick");
      pick.hidden = false;
      (SNAPSHOT.texts || []).forEach((t, i) => pick.append(el("option", { value: i, text: t.length > 60 ? `${t.slice(0, 59)}…` : t })));
      textBox.readOnly = true;
      textBox.value = (SNAPSHOT.texts || [""])[0] || "";
      pick.addEventListener("change", (ev) => {
        textBox.value = SNAPSHOT.texts[+pick.value];
        onInput(ev);
      });
    } else {
      document.body.dataset.mode = "live";
      mode.append("live · ", el("code", { text: location.host }));
      textBox.addEventListener("input", onInput);
    }
    let runs;
    try {
      runs = (await api("/api/runs")).runs || [];
    } catch (err) {
      message(pageMsg, err instanceof ApiError ? err.message : String(err), "error");
      return;
    }
    if (!runs.length) {
      message(pageMsg, "No run to explore.", "error");
      return;
    }
    state.runs = runs;
    const a = $("run-a");
    const b = $("run-b");
    b.append(el("option", { value: "", text: "— none —" }));
    for (const r of runs) {
      a.append(el("option", { value: r.id, text: runLabel(r) }));
      b.append(el("option", { value: r.id, text: runLabel(r) }));
    }
    a.value = String(runs[0].id);
    b.value = runs.length > 1 ? String(runs[1].id) : "";
    $("runpick").hidden = false;
    a.addEventListener("change", chooseRuns);
    b.addEventListener("change", chooseRuns);
    if (!textBox.value && !SNAPSHOT) textBox.value = "Jane walked into the room . John walked in too . Jane said hi to";
    state.text = textBox.value;
    chooseRuns();
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const slot of state.slots) {
          if (slot.data.inside) { clearNode(slot.els.inside.body); renderInside(slot); }
          if (slot.data.gradient) { clearNode(slot.els.gradient.body); renderGradient(slot); }
        }
      }, 200);
    });
    document.body.dataset.ready = "1";
  }

  window.rnnkitExplore = {
    timings,
    get version() { return state.version; },
    settled() { return state.inflight === 0 && !state.timer; },
  };
  start();
})();
