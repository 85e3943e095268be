"""Concurrent requests, decoded together: a bounded queue and the one thread that decodes.

Requests arrive on the event loop; :meth:`Batcher.submit` queues a :class:`Job` and returns a
future. The decoding thread (the only one that touches the model) waits up to ``window_s``
after the first job arrives, takes queued jobs oldest first until their costs (source pieces)
reach ``max_tokens``, groups them by ``key`` (their decoding settings) and makes one
``decode(key, payloads)`` call per group. While it decodes, new jobs queue up and form the
next batch, so under load batches grow by themselves; the window only matters when the
server is idle.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

DecodeGroup = Callable[[Hashable, list[Any]], list[Any]]  # (key, payloads) -> result per payload


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already (HTTP 503)."""


class Stopped(Exception):
    """The batcher was stopped before the job was decoded (HTTP 503)."""


@dataclass
class Job:
    """One request: ``payload`` goes to ``decode``; ``cost`` counts its source pieces."""

    key: Hashable
    payload: Any
    cost: int
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    """A bounded queue of jobs and the decoding thread that empties it (see the module doc).

    Args:
        decode: called in the decoding thread with a key and the payloads of jobs sharing
            it; returns one result per payload. An exception fails that group's futures only
            (whoever waits on them reports it).
        window_s: how long to wait for more jobs after the first one of a batch arrives.
        max_tokens: the cost budget of one batch (a job costing more goes alone).
        max_queue: queued jobs; :meth:`submit` refuses more with :class:`QueueFull`.
    """

    def __init__(
        self,
        decode: DecodeGroup,
        window_s: float,
        max_tokens: int,
        max_queue: int,
    ) -> None:
        self._decode = decode
        self.window_s = max(0.0, window_s)
        self.max_tokens = max(1, max_tokens)
        self.max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._queued_cost = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the decoding thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nmt-decode", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fail the queued jobs with :class:`Stopped`, let the current batch finish (at most
        ``timeout_s``), and end the thread."""
        with self._cond:
            self._stopping = True
            pending, self._queue = list(self._queue), deque()
            self._queued_cost = 0
            self._cond.notify_all()
        for job in pending:
            _fail(job, Stopped("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __len__(self) -> int:
        """Jobs waiting (not those being decoded)."""
        return len(self._queue)

    def submit(self, key: Hashable, payload: Any, cost: int) -> Future:
        """Queue a job; its future gets ``decode``'s result for ``payload`` (or its error).

        Raises:
            QueueFull: ``max_queue`` jobs are waiting already.
            Stopped: the batcher is stopping.
        """
        job = Job(key, payload, max(1, cost))
        with self._cond:
            if self._stopping:
                raise Stopped("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are queued")
            self._queue.append(job)
            self._queued_cost += job.cost
            self._cond.notify_all()
        return job.future

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            for key, jobs in _groups(batch).items():
                self._decode_group(key, jobs)

    def _next_batch(self) -> list[Job] | None:
        """Wait for a job, then up to the window for more (or a full budget); take a batch."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = self._queue[0].queued_at + self.window_s
            while not self._stopping and self._queued_cost < self.max_tokens:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopping:
                return None
            batch = [self._queue.popleft()]
            cost = batch[0].cost
            while self._queue and cost + self._queue[0].cost <= self.max_tokens:
                cost += self._queue[0].cost
                batch.append(self._queue.popleft())
            self._queued_cost -= cost
            return batch

    def _decode_group(self, key: Hashable, jobs: list[Job]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._decode(key, [job.payload for job in live])
        except Exception as err:  # the thread outlives any one batch; its clients get the error
            for job in live:
                job.future.set_exception(err)
            return
        for job, result in zip(live, results):
            job.future.set_result(result)


def _groups(batch: list[Job]) -> dict[Hashable, list[Job]]:
    """Jobs by key, keys in order of their first job (dicts keep insertion order)."""
    groups: dict[Hashable, list[Job]] = {}
    for job in batch:
        groups.setdefault(job.key, []).append(job)
    return groups


def _fail(job: Job, err: Exception) -> None:
    if job.future.set_running_or_notify_cancel():
        job.future.set_exception(err)
