"""The Starlette app of ``rnnkit serve``: the task's routes, health, the OpenAPI description.

Every answer is JSON; every refusal is ``{"error": "..."}`` with a 4xx status naming the
field and what was expected; an internal error is a 500, logged in one line, and the service
goes on. A request's body is read whole (within its size and its ``--timeout``) before it
is queued, so a slow client holds a connection, never the model thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rnnkit.errors import RnnkitError
from rnnkit.experiments.common import strict_json
from rnnkit.inference import Trained
from rnnkit.serve.batcher import MAX_QUEUED, Batcher, ModelThread
from rnnkit.serve.methods import KINDS, METHODS, Method, kind_name, routes_of
from rnnkit.serve.openapi import openapi
from rnnkit.serve.schema import Limits, RequestError, read_request, request_schemas
from rnnkit.textsafe import printable


class JSONResponse(Response):
    """JSON, UTF-8; a float that is not finite (the perplexity of an impossible line) is null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(strict_json(content), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def log_line(message: str) -> None:
    """One line on standard error (the traceback too with ``RNNKIT_TRACEBACK=1``)."""
    if os.environ.get("RNNKIT_TRACEBACK") == "1":
        traceback.print_exc()
    print(f"rnnkit serve: {printable(message)}", file=sys.stderr, flush=True)


async def read_body(request: Request, limits: Limits, deadline: float) -> bytes:
    """The whole body, at most ``limits.body_bytes`` (by its Content-Length, then as it
    streams), arrived before ``deadline``: else 413 or 408."""
    most = limits.body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > most:
        raise RequestError(413, f"the body is {int(length)} bytes; at most {most} (set by --max-chars)")
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                raise RequestError(413, f"the body is over {most} bytes (set by --max-chars)")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
    except asyncio.TimeoutError:
        why = f"the body did not arrive within the server's --timeout ({limits.timeout:g} s)"
        raise RequestError(408, why) from None
    return b"".join(chunks)


Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, its refusals as 4xx JSON and anything unexpected as a logged 500."""

    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except RequestError as err:
            return error(err.status, err.message)
        except RnnkitError as err:  # what the model's own checks refuse (a prompt it cannot read)
            return error(422, str(err))
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it
        except asyncio.CancelledError:  # the server stops at once (a second Ctrl-C): no traceback
            return error(503, "the server is stopping")
        except Exception as err:
            log_line(f"internal error on {request.method} {request.url.path}: {type(err).__name__}: {err}")
            return error(500, f"internal error ({type(err).__name__}); the service goes on")

    return answer


class Service:
    """A loaded run behind HTTP: the batchers of its routes and the one model thread."""

    def __init__(
        self, trained: Trained, limits: Limits, wait: float, max_batch: int, batching: bool, quantized: bool
    ) -> None:
        self.trained, self.limits, self.quantized = trained, limits, quantized
        self.wait, self.max_batch, self.batching = wait, max_batch, batching
        self.task = trained.config.task
        self.methods = routes_of(trained)
        self.schemas = request_schemas(limits)
        self.executor = ModelThread()
        self.batchers: dict[str, Batcher] = {}
        self.started = time.monotonic()
        self.connections: Callable[[], int] = lambda: MAX_QUEUED
        """Open connections now (the server sets it): a batch waits for no more requests than can come."""

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for path, (method, _, batched) in self.methods.items():
            run = self._runner(method)
            batching = self.batching and batched
            batcher = Batcher(
                run, self.executor, self.wait, self.max_batch, batching, lambda: self.connections()
            )
            batcher.start()
            self.batchers[path] = batcher
        try:
            yield
        finally:
            for batcher in self.batchers.values():
                await batcher.stop()
            self.executor.shutdown(wait=False)

    def _runner(self, method: Method) -> Callable[[list[Any]], list[Any]]:
        def run(requests: list[Any]) -> list[Any]:
            with torch.no_grad():
                return method(self.trained, requests)

        return run

    def endpoint(self, path: str) -> Endpoint:
        schema, items = self.schemas[path], self.methods[path][1]

        async def answer(request: Request) -> Response:
            deadline = time.monotonic() + self.limits.timeout
            body = await read_body(request, self.limits, deadline)
            checked = read_request(body, schema, self.limits)
            return JSONResponse(await self.batchers[path].submit(checked, items(checked), deadline))

        return guarded(answer)

    def served(self) -> str:
        return ", ".join(f"POST {p}" for p in self.methods) + ", GET /v1/health, GET /openapi.json"

    def elsewhere(self, path: str) -> Endpoint:
        """Another task's route: 404 naming what this run serves."""
        owner = next(kind for kind, routes in METHODS.items() if path in routes)

        async def answer(request: Request) -> Response:
            return error(
                404,
                f"{path} is for {KINDS[owner]}; this server runs {kind_name(self.trained)} "
                f"and serves {self.served()}",
            )

        return answer

    async def health(self, request: Request) -> Response:
        model = self.trained.model
        config = self.trained.config.model
        return JSONResponse(
            {
                "status": "ok",
                "task": self.task,
                "model": {
                    "run": self.trained.run_dir.name,
                    "checkpoint": self.trained.which,
                    "cell": config.cell,
                    "num_layers": config.num_layers,
                    "hidden_size": config.hidden_size,
                    "bidirectional": config.bidirectional,
                    "parameters": None if self.quantized else sum(p.numel() for p in model.parameters()),
                    "device": str(self.trained.device),
                    "int8": self.quantized,
                },
                "vocab_size": len(self.trained.vocab) if self.trained.vocab is not None else None,
                "uptime_s": round(time.monotonic() - self.started, 3),
                "queue": sum(b.queued for b in self.batchers.values()),
                "batching": self.batching,
                "served": {
                    "requests": sum(b.requests for b in self.batchers.values()),
                    "batches": sum(b.batches for b in self.batchers.values()),
                },
            }
        )

    async def openapi(self, request: Request) -> Response:
        title = f"rnnkit serve {self.trained.run_dir.name}"
        return JSONResponse(openapi(self.task, list(self.methods), self.limits, title))

    async def refused(self, request: Request, exc: Exception) -> Response:
        """Starlette's own refusals (no such path, a wrong method) as JSON."""
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if exc.status_code == 405:
            allowed = exc.headers.get("Allow", "") if exc.headers else ""
            return error(405, f"{request.method} {path}: expected {allowed or 'another method'}")
        if exc.status_code == 404:
            runs = kind_name(self.trained)
            return error(404, f"no route {path}; this server runs {runs} and serves {self.served()}")
        return error(exc.status_code, str(exc.detail))

    async def failed(self, request: Request, exc: Exception) -> Response:
        log_line(f"internal error on {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        return error(500, f"internal error ({type(exc).__name__}); the service goes on")


def build_app(
    trained: Trained,
    limits: Limits | None = None,
    wait: float = 0.005,
    max_batch: int = 64,
    batching: bool = True,
    quantized: bool = False,
) -> Starlette:
    """The ASGI app serving ``trained``: its task's routes, ``/v1/health``, ``/openapi.json``.

    ``wait`` (seconds) and ``max_batch`` (items) shape the micro-batches; ``batching=False``
    runs one request at a time."""
    service = Service(trained, limits or Limits(), wait, max_batch, batching, quantized)
    routes = [Route(p, service.endpoint(p), methods=["POST"]) for p in service.methods]
    every = {p for routes in METHODS.values() for p in routes}
    others = sorted(every - set(service.methods))
    routes += [Route(p, service.elsewhere(p), methods=["GET", "POST"]) for p in others]
    routes += [
        Route("/v1/health", guarded(service.health), methods=["GET"]),
        Route("/openapi.json", guarded(service.openapi), methods=["GET"]),
    ]
    handlers = {HTTPException: service.refused, Exception: service.failed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=service.lifespan)
    app.state.service = service
    return app
