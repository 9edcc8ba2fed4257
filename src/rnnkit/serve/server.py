"""uvicorn, as ``rnnkit serve`` runs it: the startup line once it listens, and a graceful stop
on Ctrl-C or SIGTERM that returns to the command instead of raising the signal again."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

KEEP_ALIVE_S = 5
"""An idle kept-alive connection is closed after this many seconds (uvicorn's timeout_keep_alive)."""

GRACE_S = 10
"""On Ctrl-C or SIGTERM, requests in flight get this many seconds to finish."""

CONNECTIONS = 1000
"""Open connections at most; past that uvicorn answers 503 (each holds a file descriptor)."""

SWITCH_S = 0.001
"""How long a thread holds the GIL when another waits (Python's default: 5 ms). The event loop
waits on the model thread's Python parts at every socket call; shorter turns gave 32 clients
~10-25% more requests/s (bench/serve.py, 2 cores: 0.005 s 122-128, 0.001 s 125-158)."""

HEADER_BYTES = 16384
"""A request's line and headers at most (h11's incomplete event size): a client that sends
more is refused, not buffered."""


class Server(uvicorn.Server):
    """uvicorn's server that prints ``line`` once it listens and records the signal that
    stopped it (``signal``: None while it runs)."""

    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self.line = line
        self.signal: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.line, flush=True)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM):  # kept to the end: a late Ctrl-C changes nothing
            signal.signal(sig, self.handle_exit)
        yield

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = sig
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:  # a second Ctrl-C: uvicorn leaves the app's lifespan hanging; end it
            await self.lifespan.shutdown()


def run(app: Any, sock: socket.socket, line: str) -> int | None:
    """Serve ``app`` on the bound ``sock`` until a signal: the signal that stopped it.

    Requests in flight get :data:`GRACE_S` seconds (none after a second Ctrl-C)."""
    config = uvicorn.Config(
        app,
        http="h11",
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACE_S,
        limit_concurrency=CONNECTIONS,
        h11_max_incomplete_event_size=HEADER_BYTES,
    )
    server = Server(config, line)
    service = getattr(app.state, "service", None)
    if service is not None:  # rnnkit's app: a batch need not wait for requests that cannot come
        service.connections = lambda: len(server.server_state.connections)
    sys.setswitchinterval(SWITCH_S)
    server.run(sockets=[sock])
    return server.signal
