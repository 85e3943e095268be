"""Decoding batches in parallel Python threads of one process (``decode.batch_threads``).

A decoder step is a handful of small matrix products that two intra-op threads share
poorly (most of a step is too small to split). Two *batches* at a time share the cores
better: each thread searches its own batches with its share of the torch threads, as
CTranslate2's ``inter_threads`` do. Threads need no fork and no copy of the model, and
they work: torch releases the GIL inside its ops, and a beam step spends most of its time
there (a same-process A/B on the bench's 2-core machine, beam 5: 1.14x over one search with
2 torch threads, ahead of 2 worker processes; docs/performance.md).

Each thread searches with its own view of the model (one of ``views``): a shortlist view
keeps per-search scratch buffers (:class:`~nmt.search.shortlist.Scratch`), so no two
searches may share one. Grad and inference mode are per thread in torch, so each thread takes the
caller's. The torch thread count (a per-thread setting under OpenMP, a process-wide one
for torch's own bookkeeping) is put back when the pool ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import torch
from torch import nn

from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.search import search
from nmt.search.hypothesis import Hypothesis
from nmt.search.workers import Job


def torch_threads_per_batch_thread(batch_threads: int, threads: int | None = None) -> int:
    """Torch threads of each decoding thread: ``threads`` (default: this thread's) shared
    out, at least one each."""
    return max(1, (threads or torch.get_num_threads()) // max(1, batch_threads))


def search_in_threads(
    views: list[nn.Module],
    jobs: list[Job],
    cfg: DecodeConfig,
    return_attention: bool = False,
) -> Iterator[tuple[int, list[list[Hypothesis]]]]:
    """Search every batch (a :class:`Job`) in ``len(views)`` threads of this process, each
    with its own view of the model (see the module docstring), on the CPU. The batches are
    taken in order (the first free thread takes the next one). Yields ``(batch number, n-best lists)`` as batches finish, in no particular order.
    A failing batch raises its error here; closing the generator early lets the running
    batches finish and drops the rest.
    """
    batch_threads = len(views)
    total = torch.get_num_threads()
    per_thread = torch_threads_per_batch_thread(batch_threads, total)
    free_views: queue.SimpleQueue[nn.Module] = queue.SimpleQueue()
    for view in views:
        free_views.put(view)
    grad = torch.is_grad_enabled()
    inference = torch.is_inference_mode_enabled()
    local = threading.local()

    def run(key: int) -> tuple[int, list[list[Hypothesis]]]:
        if not hasattr(local, "model"):
            torch.set_num_threads(per_thread)
            local.model = free_views.get_nowait()  # one per thread: batch_threads threads
        job = jobs[key]
        src, lengths = pad(job.src)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            nbest = search(
                local.model, src, lengths, cfg, return_attention, job.prefixes, job.constraints
            )
        return key, nbest

    pool = ThreadPoolExecutor(batch_threads, thread_name_prefix="nmt-decode")
    futures = [pool.submit(run, key) for key in range(len(jobs))]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(total)
