"""Decoding batches in parallel worker processes on the CPU (``decode.workers``).

A decoder step is a handful of small matrix products, which two intra-op threads share
poorly: on the bench's 2-core machine one process with 2 threads beam-decoded only ~1.3x
faster than with 1 thread, while two single-threaded processes, each on its own batches,
were ~1.25x faster than the 2-thread process (docs/performance.md). Marian and CTranslate2
translate on CPUs the same way (N workers, whole batches each).

Workers are forked from the translating process, so the model is shared with it
(copy-on-write) and never pickled; only the source ids go out and the hypotheses come back.
Threads of one process do the same without forking (``decode.batch_threads``,
:mod:`nmt.search.threads`): torch releases the GIL inside its ops, and they measured faster
than workers on the bench's machine.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nmt.config import DecodeConfig
from nmt.data.batching import pad
from nmt.search import search
from nmt.search.hypothesis import Hypothesis

_WORKER: dict = {}  # in a worker process: its model and decode config


@dataclass
class Job:
    """One decoding batch: source token ids per sentence, and optionally per sentence its
    target prefix ids and its constraint phrases (see :func:`nmt.search.search`)."""

    src: list[list[int]]
    prefixes: list[list[int]] | None = None
    constraints: list[list[list[int]]] | None = None


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Torch threads of each decoding process: all of ``threads`` (default: this process's)
    for one process, ONE for each forked worker. A forked child cannot use a second OpenMP
    thread once its parent has started its own thread pool (GNU OpenMP is not fork-safe: the
    child's first parallel region hangs; tests/test_cli_translate.py reproduces it), so
    workers run single-threaded: set ``decode.workers`` to the number of cores to use."""
    if workers <= 1:
        return max(1, threads or torch.get_num_threads())
    return 1


def _start_worker(model, cfg: DecodeConfig, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(model=model, cfg=cfg)


def _search_batch(task: tuple[int, Job, bool]) -> tuple[int, list[list[Hypothesis]]]:
    key, job, return_attention = task
    src, lengths = pad(job.src)
    with torch.inference_mode():
        return key, search(
            _WORKER["model"],
            src,
            lengths,
            _WORKER["cfg"],
            return_attention,
            job.prefixes,
            job.constraints,
        )


def search_in_workers(
    model,
    jobs: list[Job],
    cfg: DecodeConfig,
    workers: int,
    return_attention: bool = False,
) -> Iterator[tuple[int, list[list[Hypothesis]]]]:
    """Search every batch (a :class:`Job`) in ``workers`` forked CPU processes.

    Each worker runs one torch thread (see :func:`threads_per_worker`). Yields
    ``(batch number, n-best lists)`` as batches finish, in no particular order.
    """
    threads = threads_per_worker(workers)
    tasks = [(key, job, return_attention) for key, job in enumerate(jobs)]
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_start_worker, initargs=(model, cfg, threads)) as pool:
        yield from pool.imap_unordered(_search_batch, tasks)
