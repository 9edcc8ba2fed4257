"""The Starlette app of ``rnnkit explore``: the page, its assets and the JSON API it calls.

Every answer is JSON; every refusal is ``{"error": "..."}`` with a 4xx status, one line
naming the field and what was expected; an internal error is a 500 with one line, logged,
and the server goes on (a probe process that stopped: a 503 line, and a new process for the
next question). The computations, and the encoding of their answers, run off the event
loop (see :class:`rnnkit.explore.compute.Explorer`; with a :class:`~rnnkit.explore.worker.ProbeProcess`,
the probe's in a process of their own), so one long answer never holds up another's
delivery; each answer says in a ``Server-Timing`` header how long it waited for its model
(``wait``), was computed (``compute``) and encoded (``encode``), which the browser's Resource
Timing shows beside the transfer (``bench/explore.py`` reads them).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rnnkit.errors import RnnkitError
from rnnkit.experiments.common import strict_json
from rnnkit.explore.compute import MAX_CHARS, Explorer
from rnnkit.explore.worker import Encoded, ProbeProcess, ProbeStoppedError
from rnnkit.textsafe import printable

STATIC = Path(__file__).parent / "static"
BODY_BYTES = 8 * MAX_CHARS
"""A request body of more bytes is refused (413): the longest text accepted, every
character written as a JSON escape, and room for the other fields."""

INTEGER, NUMBER, STRING = "an integer", "a number", "a string"
FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "analyze": {"run": (INTEGER, True), "text": (STRING, True), "k": (INTEGER, False)},
    "inside": {
        "run": (INTEGER, True),
        "text": (STRING, True),
        "layer": (INTEGER, True),
        "direction": (INTEGER, False),
        "quantity": (STRING, False),
    },
    "units": {
        "run": (INTEGER, True),
        "text": (STRING, True),
        "layer": (INTEGER, True),
        "direction": (INTEGER, False),
        "quantity": (STRING, False),
        "start": (INTEGER, True),
        "end": (INTEGER, True),
        "threshold": (NUMBER, False),
    },
    "gradient": {
        "run": (INTEGER, True),
        "text": (STRING, True),
        "layer": (INTEGER, True),
        "direction": (INTEGER, False),
    },
}
"""Each POST route's fields: (type, required)."""

DEFAULTS = {"k": 5, "direction": 0, "quantity": "h", "threshold": None}

INSIDE_DIGITS = 4
"""Significant digits (of the colour range) of the values ``/api/inside`` sends: the page paints
them, and 20,000 values of a 200-unit layer over 100 tokens are then ~130 KB of JSON, not ~410 KB."""


class JSONResponse(Response):
    """JSON, UTF-8; a float that is not finite (an impossible text's perplexity) is null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:  # nearly always every number is finite: no walk over every value first
            return _dumps(content)
        except ValueError:
            return _dumps(strict_json(content))


def _dumps(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class RefusedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": printable(message)}, status_code=status)


def _typed(name: str, value: Any, kind: str) -> Any:
    """``value`` of the field ``name`` if it is of ``kind``, else a one-line refusal."""
    ok = {
        INTEGER: isinstance(value, int) and not isinstance(value, bool),
        NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool),
        STRING: isinstance(value, str),
    }[kind]
    if not ok:
        raise RefusedError(400, f"{name}: expected {kind}, got {json.dumps(value)[:40]}")
    return value


async def _body(request: Request, route: str) -> dict[str, Any]:
    """The request's JSON object, its fields checked against :data:`FIELDS`."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > BODY_BYTES:
        raise RefusedError(413, f"the body is {length} bytes; at most {BODY_BYTES}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > BODY_BYTES:
            raise RefusedError(413, f"the body is over {BODY_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RefusedError(400, "the body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise RefusedError(400, "the body: expected a JSON object")
    fields = FIELDS[route]
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise RefusedError(
            400, f"{unknown[0][:40]}: not a field of /api/{route} (fields: {', '.join(fields)})"
        )
    out = {}
    for name, (kind, required) in fields.items():
        if name not in body or body[name] is None:
            if required:
                raise RefusedError(400, f"{name}: required ({kind})")
            out[name] = DEFAULTS[name]
        else:
            out[name] = _typed(name, body[name], kind)
    return out


def _log(message: str) -> None:
    """One line on standard error (the traceback too with ``RNNKIT_TRACEBACK=1``)."""
    if os.environ.get("RNNKIT_TRACEBACK") == "1":
        traceback.print_exc()
    print(f"rnnkit explore: {printable(message)}", file=sys.stderr, flush=True)


async def _answer(compute: Callable[[], Any], explorer: Explorer) -> Response:
    def answer() -> Response:
        explorer.held.waited = 0.0
        start = time.perf_counter()
        content = compute()
        computed = time.perf_counter()
        waited = explorer.held.waited
        if isinstance(content, Encoded):  # computed and encoded by the probe process
            response: Response = Response(content.body, media_type="application/json")
            waited = content.wait
            passed = (computed - start) * 1000 - waited - content.compute - content.encode
            compute_ms, encode_ms = content.compute, content.encode + max(0.0, passed)
        else:
            response = JSONResponse(content)
            compute_ms = (computed - start) * 1000 - waited
            encode_ms = (time.perf_counter() - computed) * 1000
        response.headers["Server-Timing"] = (
            f"wait;dur={waited:.1f}, compute;dur={compute_ms:.1f}, encode;dur={encode_ms:.1f}"
        )
        return response

    try:
        return await run_in_threadpool(answer)
    except RnnkitError as err:
        return error(400, str(err).splitlines()[0] if str(err) else "bad request")
    except ProbeStoppedError as err:
        _log(str(err))
        return error(503, str(err))
    except Exception as err:  # the page shows a line; the server goes on
        _log(f"internal error: {type(err).__name__}: {err}")
        return error(500, f"internal error ({type(err).__name__}); the server goes on")


def build_app(explorer: Explorer, probes: ProbeProcess | None = None) -> Starlette:
    """The explorer's routes (see the module's docstring and ``docs`` of issue 20's contract);
    with ``probes``, the questions read from the float64 probe (inside, units, gradient) are
    answered by that process (:mod:`rnnkit.explore.worker`), the others here."""

    def probed(method: str, *args: Any) -> Any:
        return getattr(explorer, method)(*args) if probes is None else probes.ask(method, *args)

    def post(
        route: str, compute: Callable[[dict[str, Any]], Any]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _body(request, route)
            except RefusedError as refusal:
                return error(refusal.status, str(refusal))
            return await _answer(lambda: compute(body), explorer)

        return endpoint

    async def runs(request: Request) -> Response:
        return JSONResponse(explorer.describe())

    async def training(request: Request) -> Response:
        value = request.query_params.get("run", "0")
        if not value.lstrip("-").isdigit():
            return error(400, f"run: expected an integer, got {value[:40]!r}")
        return await _answer(lambda: explorer.training(int(value)), explorer)

    async def page(request: Request) -> Response:
        index = STATIC / "index.html"
        if not index.is_file():
            return error(404, "the page is not installed (rnnkit/explore/static/index.html); the API answers")
        return FileResponse(index, headers={"Cache-Control": "no-store"})

    async def refused(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return error(status, f"{request.url.path[:80]}: {detail}")

    routes = [
        Route("/", page),
        Route("/api/runs", runs),
        Route("/api/training", training),
        Route(
            "/api/analyze",
            post("analyze", lambda b: explorer.analyze(b["run"], b["text"], b["k"])),
            methods=["POST"],
        ),
        Route(
            "/api/inside",
            post(
                "inside",
                lambda b: probed(
                    "inside", b["run"], b["text"], b["layer"], b["direction"], b["quantity"], INSIDE_DIGITS
                ),
            ),
            methods=["POST"],
        ),
        Route(
            "/api/units",
            post(
                "units",
                lambda b: probed(
                    "units",
                    b["run"],
                    b["text"],
                    b["layer"],
                    b["direction"],
                    b["quantity"],
                    b["start"],
                    b["end"],
                    b["threshold"],
                ),
            ),
            methods=["POST"],
        ),
        Route(
            "/api/gradient",
            post("gradient", lambda b: probed("gradient", b["run"], b["text"], b["layer"], b["direction"])),
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: refused})
