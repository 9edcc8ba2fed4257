"""Micro-batching: concurrent requests of one route gathered into one batch for the model thread.

A request waits at most ``wait`` seconds after the first one of its batch arrived (or until
the batch holds ``max_items`` lines or sentences, or every open connection has a request in
it: none other can come); then the batch runs on the one model thread, off the event loop,
and each request gets its own part of the results. While the model runs a batch, the next
one gathers, so under load the wait costs nothing, and a lone client never waits. A batch
that fails is run again one request at a time, so a bad request fails alone.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from rnnkit.serve.schema import RequestError

MAX_QUEUED = 4096
"""Lines, sentences or prompts waiting per route at most; past that a request is refused (503)."""


class ModelThread(Executor):
    """The one thread that runs the model: a daemon, so that a stop need not wait for a long
    computation (a generation of ``--max-tokens``) nobody will read, as ThreadPoolExecutor's
    threads are waited for; ``busy`` says whether one is running."""

    def __init__(self) -> None:
        self.work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self.work = queue.SimpleQueue()
        self.busy = False
        self.thread = threading.Thread(target=self._run, name="rnnkit-model", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.work.put((future, lambda: fn(*args, **kwargs), ()))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.work.put(None)
        if wait:
            self.thread.join()

    def _run(self) -> None:
        while (item := self.work.get()) is not None:
            future, call, _ = item
            if not future.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                future.set_result(call())
            except BaseException as err:
                future.set_exception(err)
            finally:
                self.busy = False


@dataclass
class Job:
    """One request in the queue: what it asks, how many items, when it must be answered by."""

    request: Any
    items: int
    arrived: float
    deadline: float
    future: asyncio.Future[Any]
    started: bool = field(default=False)


class Batcher:
    """Gathers the requests of one route into batches for ``run`` on ``executor`` (one thread).

    Args:
        run: the requests of a batch -> their responses, in order (on the model thread).
        executor: the model thread, shared by every route's batcher.
        wait: seconds a batch waits for more requests after its first arrived (0: none).
        max_items: lines, sentences or prompts per batch; a larger request runs alone.
        batching: False: every request runs alone, as soon as the thread is free.
        connections: how many connections are open (each holds one request at most): the
            wait ends once the queue holds as many requests. Default: no such bound.
    """

    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        executor: Executor,
        wait: float,
        max_items: int,
        batching: bool = True,
        connections: Callable[[], int] = lambda: MAX_QUEUED,
    ) -> None:
        self.run, self.executor, self.wait, self.connections = run, executor, wait, connections
        self.max_items, self.batching = max_items, batching
        self.queue: deque[Job] = deque()
        self.queued = 0  # items in the queue
        self.arrival = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.batches = self.requests = 0  # run so far: what /v1/health reports

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def submit(self, request: Any, items: int, deadline: float) -> Any:
        """The response to ``request`` (of ``items`` items), or a :class:`RequestError`: 503 if
        it is still queued at ``deadline`` (``time.monotonic``), 504 if still computed."""
        if self.queued + items > MAX_QUEUED and self.queue:
            raise RequestError(503, f"busy: {self.queued} items already queued; try again")
        loop = asyncio.get_running_loop()
        job = Job(request, items, time.monotonic(), deadline, loop.create_future())
        self.queue.append(job)
        self.queued += items
        self.arrival.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), max(deadline - time.monotonic(), 0))
        except asyncio.TimeoutError:
            if job.started:
                raise RequestError(504, "the computation ran past the server's --timeout") from None
            why = "busy: the request waited in the queue past the server's --timeout"
            raise RequestError(503, why) from None
        finally:
            job.future.cancel()  # answered or given up: a result that comes later is dropped

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.arrival.clear()
                await self.arrival.wait()
            if self.batching:
                until = self.queue[0].arrived + self.wait
                while (
                    self.queued < self.max_items
                    and len(self.queue) < self.connections()
                    and (left := until - time.monotonic()) > 0
                ):
                    self.arrival.clear()
                    try:
                        await asyncio.wait_for(self.arrival.wait(), left)
                    except asyncio.TimeoutError:
                        break
            jobs = self._take()
            if not jobs:
                continue
            self.batches += 1
            self.requests += len(jobs)
            outcomes = await loop.run_in_executor(self.executor, self._run_batch, [j.request for j in jobs])
            for job, (ok, value) in zip(jobs, outcomes):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _take(self) -> list[Job]:
        """The next batch from the queue, requests past their deadline (or given up) left out."""
        jobs: list[Job] = []
        items = 0
        now = time.monotonic()
        while self.queue:
            job = self.queue[0]
            if jobs and (not self.batching or items + job.items > self.max_items):
                break
            self.queue.popleft()
            self.queued -= job.items
            if job.future.done() or job.deadline <= now:
                continue  # its handler has answered 503 already
            job.started = True
            jobs.append(job)
            items += job.items
        return jobs

    def _run_batch(self, requests: list[Any]) -> list[tuple[bool, Any]]:
        """(ok, response or exception) per request: the batch at once, or, if it fails, one at a time."""
        try:
            responses = self.run(requests)
            return [(True, r) for r in responses]
        except Exception as err:
            if len(requests) == 1:
                return [(False, err)]
        return [self._run_batch([r])[0] for r in requests]
