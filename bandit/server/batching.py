"""Run the hot routes' handlers back to back, once per event-loop iteration.

Under load, several requests become ready in one iteration of the worker's event
loop. Served one by one, each handler runs between the HTTP work of other requests,
which evicts its data and code from the CPU caches: a decision costs 2–3× what it
costs in a tight loop. :class:`BatchRunner` collects the (handler, body) pairs
submitted during one iteration and runs them in one loop callback, one after the
other, then wakes each request's task with its result (or its exception) to send the
reply. Each handler runs as it would inline (same arguments, same order of arrival,
nothing shared between them) but outside its request's task (nothing on the hot path
uses the task or its context variables); only when it runs changes. A request
cancelled before its turn (its body deadline) is skipped, as it would not have been
decided; one cancelled after its handler ran is answered (``FastRoutes._result``).

:func:`run_inline` is the plain twin (``BANDIT_BATCH_HANDLERS=false``); the tests check
that both give the same replies for the same requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

Handler = Callable[[bytes], tuple[int, Any]]

MAX_BATCH = 16  # a larger batch is run in several callbacks (bounds a reply's wait)


async def run_inline(handler: Handler, body: bytes) -> tuple[int, Any]:
    """The handler, now (the plain twin)."""
    return handler(body)


class BatchRunner:
    """``await runner(handler, body)``: the handler's result, run in a batch with the
    other requests of this loop iteration (at most :data:`MAX_BATCH` per callback; the
    next ones in a later callback, after this batch's requests have been woken)."""

    def __init__(self, on_batch: Callable[[int], None] | None = None) -> None:
        self._pending: list[tuple[Handler, bytes, asyncio.Future[tuple[int, Any]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # where a run is scheduled
        self.on_batch = on_batch  # told each callback's number of handlers run

    def __call__(self, handler: Handler, body: bytes) -> asyncio.Future[tuple[int, Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, Any]] = loop.create_future()
        if self._loop is not loop:
            if self._loop is not None:  # a run scheduled on another (stopped) loop
                self._pending = [p for p in self._pending if p[2].get_loop() is loop]
            self._loop = loop
            loop.call_soon(self._run)
        self._pending.append((handler, body, future))
        return future

    def _run(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        ran = 0
        try:
            for handler, body, future in batch:
                if future.done():  # cancelled while waiting: not decided
                    continue
                ran += 1
                try:
                    result = handler(body)
                except Exception as exc:  # the request's own error, raised in its task
                    future.set_exception(exc if not isinstance(exc, StopIteration)
                                         else RuntimeError(repr(exc)))
                else:
                    future.set_result(result)
        finally:  # (a BaseException out of a handler: what it left undone fails)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the handler batch was interrupted"))
            if self._pending:
                asyncio.get_running_loop().call_soon(self._run)
            else:
                self._loop = None
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # (counting must not fail requests)
                self.on_batch(ran)
