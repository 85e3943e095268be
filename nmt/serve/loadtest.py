"""``nmt-bench --serve``: requests per second and latency of ``nmt-serve`` under load.

A server runs on 127.0.0.1 (its own process, so the clients do not share its interpreter);
1, 8 and 32 concurrent clients (asyncio + httpx) each send one-sentence requests, one after
the other, until a fixed number of requests is answered. Then the same load again on a
server that decodes every request alone (``--batch-window-ms 0 --max-batch-tokens 1``): the
ratio of the two is what batching concurrent requests buys.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx

from nmt.errors import NMTError
from nmt.serve.settings import ServeSettings, flag

StartServer = Callable[[ServeSettings], AbstractContextManager[str]]  # settings -> base URL
MODES = {
    "on": ServeSettings(),
    "off": ServeSettings(batch_window_ms=0, max_batch_tokens=1),
}


@dataclass
class LoadPlan:
    """How much load: ``requests`` per number of clients, ``beam`` for every request."""

    clients: tuple[int, ...] = (1, 8, 32)
    requests: int = 256
    sentences_per_request: int = 1
    beam: int = 5
    timeout_s: float = 300.0  # per request


def load_test(start: StartServer, sentences: list[str], plan: LoadPlan) -> dict[str, Any]:
    """Every number of clients against a batching server, then against one that batches
    nothing. Returns the rows and the batching factor (sentences/s on / off) per clients."""
    if not sentences:
        raise NMTError("the load test needs at least one sentence")
    rows = []
    for batching, settings in MODES.items():
        with start(settings) as url:
            for clients in plan.clients:
                row = asyncio.run(_drive(url, sentences, clients, plan))
                rows.append({"batching": batching, **row})
    rate = {(r["batching"], r["clients"]): r["sent_s"] for r in rows}
    factor = {
        str(c): round(rate["on", c] / rate["off", c], 2) if rate["off", c] else None
        for c in plan.clients
    }
    return {
        "plan": vars(plan) | {"clients": list(plan.clients)},
        "rows": rows,
        "batching_factor": factor,
    }


async def _drive(url: str, sentences: list[str], clients: int, plan: LoadPlan) -> dict[str, Any]:
    """``clients`` coroutines share ``plan.requests`` requests; latency of each answer."""
    numbers = itertools.count()
    latencies: list[float] = []
    errors = 0
    k = plan.sentences_per_request

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while (i := next(numbers)) < plan.requests:
            batch = [sentences[(i * k + j) % len(sentences)] for j in range(k)]
            start = time.perf_counter()
            response = await http.post("/translate", json={"sentences": batch, "beam": plan.beam})
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=plan.timeout_s, limits=limits) as http:
        warm = await http.post("/translate", json={"sentences": sentences[:1], "beam": plan.beam})
        if warm.status_code != 200:
            raise NMTError(f"the server at {url} refused the warm-up request: {warm.text[:200]}")
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "sentences": len(latencies) * k,
        "seconds": round(seconds, 2),
        "sent_s": round(len(latencies) * k / seconds, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "errors": errors,
    }


def format_serve_table(result: dict[str, Any]) -> str:
    """The load test as a Markdown table, then the batching factor per number of clients."""
    plan = result["plan"]
    lines = [
        f"nmt-serve load test: {plan['requests']} requests of {plan['sentences_per_request']} "
        f"sentence(s) per row, beam {plan['beam']}",
        "| batching | clients | requests | sent/s | p50 ms | p95 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['batching']} | {r['clients']} | {r['requests']} | {r['sent_s']} | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['errors']} |"
        )
    factors = ", ".join(f"{c} clients x{f}" for c, f in result["batching_factor"].items())
    lines += ["", f"batching factor (sent/s on / off): {factors}"]
    return "\n".join(lines)


# --- a server in its own process -----------------------------------------------------------


def server_flags(settings: ServeSettings) -> list[str]:
    return [
        arg
        for f in fields(settings)
        for arg in (f"--{flag(f.name)}", str(getattr(settings, f.name)))
    ]


@contextlib.contextmanager
def serve_subprocess(
    checkpoint: str | Path, settings: ServeSettings, extra: list[str] = (), timeout_s: float = 300.0
) -> Iterator[str]:
    """``nmt-serve checkpoint`` on a free port of 127.0.0.1 in a child process; yields its
    URL once it answers ``/health``; stops it on exit.

    Raises:
        NMTError: it exited or did not answer within ``timeout_s`` (with its last line).
    """
    command = [sys.executable, "-m", "nmt.cli.serve", str(checkpoint), "--host", "127.0.0.1"]
    command += ["--port", "0", *server_flags(settings), *extra]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    try:
        yield _wait_for_url(proc, lines, time.monotonic() + timeout_s)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
    for line in proc.stderr:  # keep reading: a full pipe would block the server
        lines.put(line.rstrip("\n"))


def _wait_for_url(proc: subprocess.Popen, lines: queue.Queue, deadline: float) -> str:
    last, url = "", None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NMTError(f"nmt-serve exited with code {proc.returncode}: {last}")
        with contextlib.suppress(queue.Empty):
            last = lines.get(timeout=0.1)
            found = re.search(r" on (http://\S+)/$", last)
            url = found.group(1) if found else url
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
    raise NMTError(f"nmt-serve did not answer within its time limit: {last}")


# --- nmt-bench --serve ----------------------------------------------------------------------


def serve_bench(
    checkpoint: str | None,
    threads: int,
    updates: int,
    work: Path,
    plan: LoadPlan,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The load test of ``checkpoint``, or (without one) of the model ``make bench`` decodes
    with: the reference architecture trained here for ``updates`` updates. The requests are
    Multi30k test_2016_flickr's English sentences, in order."""
    from nmt.bench import (
        REFERENCE,
        TARGET_TOKENS_PER_UPDATE,
        calibrate_max_tokens,
        compose,
        in_child,
        train_decode_model,
    )
    from nmt.data.datasets import load_raw

    started = time.time()
    result: dict[str, Any] = {"mode": "serve", "threads": threads}
    if checkpoint is None:
        log(f"training the decode model for {updates} updates (input feeding on) ...")
        max_tokens = in_child(calibrate_max_tokens, REFERENCE, TARGET_TOKENS_PER_UPDATE)
        overrides = [*REFERENCE, f"train.max_tokens={max_tokens}", "model.input_feeding=true"]
        out = work / "decode_model"
        info = in_child(train_decode_model, overrides, out, updates, threads)
        checkpoint = str(out / "last.pt")  # the model after exactly that many updates
        result["decode_model"] = {"checkpoint": checkpoint, "trained_here": True, **info}
    else:
        result["decode_model"] = {"checkpoint": checkpoint, "trained_here": False}
    sentences = load_raw(compose(REFERENCE).data).splits["test_2016_flickr"][0]
    log(f"load test of {checkpoint}: batching on, then off ...")
    extra = ["--threads", str(threads)]
    result.update(load_test(lambda s: serve_subprocess(checkpoint, s, extra), sentences, plan))
    result["wall_seconds"] = round(time.time() - started, 1)
    return result
