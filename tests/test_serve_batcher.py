"""The batcher of nmt-serve on its own: windows, budgets, grouping by key, a full queue,
stopping (no model, no server)."""

from __future__ import annotations

import threading
import time

import pytest

from nmt.serve.batcher import Batcher, QueueFull, Stopped

WAIT_S = 60  # every wait is bounded


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_batcher_groups_by_key_within_the_window_and_budget():
    calls: list = []

    def decode(key, payloads):
        calls.append((key, list(payloads)))
        return [f"{key}{p}" for p in payloads]

    batcher = Batcher(decode, window_s=0.5, max_tokens=5, max_queue=10)
    futures = [
        batcher.submit(key, i, cost)
        for i, (key, cost) in enumerate([("a", 1), ("b", 1), ("a", 2), ("a", 3)])
    ]
    batcher.start()  # all four were queued: the first batch takes cost 1 + 1 + 2 <= 5
    try:
        results = [f.result(WAIT_S) for f in futures]
    finally:
        batcher.stop()
    assert calls == [("a", [0, 2]), ("b", [1]), ("a", [3])]
    assert results == ["a0", "b1", "a2", "a3"]


def test_batcher_waits_for_the_window_and_refuses_when_full():
    release = threading.Event()
    calls: list = []

    def decode(key, payloads):
        calls.append(list(payloads))
        release.wait(WAIT_S)
        return payloads

    batcher = Batcher(decode, window_s=0.3, max_tokens=100, max_queue=2)
    batcher.start()
    try:
        first = [batcher.submit("k", i, 1) for i in range(2)]  # both within the window
        wait_until(lambda: len(calls) == 1, "the first batch")
        queued = [batcher.submit("k", i, 1) for i in (2, 3)]
        with pytest.raises(QueueFull):
            batcher.submit("k", 4, 1)
        release.set()
        assert [f.result(WAIT_S) for f in first + queued] == [0, 1, 2, 3]
    finally:
        batcher.stop()
    assert calls == [[0, 1], [2, 3]]
    with pytest.raises(Stopped):
        batcher.submit("k", 5, 1)


def test_stopping_fails_the_queued_jobs():
    batcher = Batcher(lambda key, payloads: payloads, window_s=0, max_tokens=1, max_queue=4)
    future = batcher.submit("k", 1, 1)  # never started: stays queued
    batcher.stop()
    with pytest.raises(Stopped):
        future.result(1)
