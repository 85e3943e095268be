"""The decoding phases of the speed benchmark (:mod:`nmt.bench`): a trained model
translates Multi30k test_2016_flickr, in fp32 and in int8.

* :func:`decode_speed`: greedy and beam 5 (GNMT alpha 1.0, at most 100 pieces, batches of
  32 sentences, as the peers decode): sentences/s, output tokens/s, BLEU, chrF, peak RSS.
* :func:`int8_decode_speed` / :func:`compare_int8`: the same model and sentences in fp32
  and in int8 (:func:`nmt.models.quantize.quantize_for_cpu`), their timed passes
  interleaved (fp32, int8, fp32, ...) so that the machine's drift hits both: median
  sentences/s of each, int8 / fp32, the BLEU of each and the share of identical outputs.
  Its fp32 figure is measured again beside int8, so it can differ from :func:`decode_speed`'s.
* :func:`shortlist_decode_speed` / :func:`compare_shortlist`: the same, fp32 with the full
  output layer against fp32 through a lexical shortlist (:mod:`nmt.search.shortlist`,
  ``decode.shortlist=K``), with the mean candidates per sentence.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import Any

import torch

from nmt.config import DecodeConfig
from nmt.data.prepare import prepare
from nmt.inference import load_for_inference, load_lexical_table
from nmt.models.quantize import quantize_for_cpu
from nmt.scoring import score
from nmt.search.lexical_table import LexicalTable
from nmt.search.threads import torch_threads_per_batch_thread
from nmt.search.translator import Translator
from nmt.search.workers import threads_per_worker


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- fp32 ------------------------------------------------------------------------------
def decode_speed(
    checkpoint: str,
    method: str,
    threads: int,
    limit: int,
    workers: int = 1,
    batch_threads: int = 1,
) -> dict[str, Any]:
    """Decode the first ``limit`` test sentences with ``threads`` torch threads, split
    between ``workers`` processes (``decode.workers``) or ``batch_threads`` threads of this
    one (``decode.batch_threads``)."""
    model, src_tok, tgt_tok, sources, refs = _decode_setup(checkpoint, threads, limit)
    decode = bench_decode_config(method, workers, batch_threads)
    translator = Translator(model, src_tok, tgt_tok, decode)
    with torch.inference_mode():
        translator.translate(sources[:16])  # warm-up
        start = time.perf_counter()
        results = translator.translate_nbest(sources)
        seconds = time.perf_counter() - start
    hyps = [r[0].text if r else "" for r in results]
    out_tokens = sum(len(r[0].tokens) for r in results if r)
    scores = score(hyps, [refs], metrics=("bleu", "chrf"))
    return {
        "method": method,
        "sentences": len(sources),
        "sent_s": round(len(sources) / seconds, 1),
        "out_tok_s": round(out_tokens / seconds),
        "seconds": round(seconds, 2),
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "bleu_signature": scores["bleu_signature"],
        **_layout(workers, batch_threads, threads),
        "peak_rss_mib": round(peak_rss_mib()),
        # the largest worker process (0 without workers); each also maps the shared model
        "worker_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0
        ),
    }


def _layout(workers: int, batch_threads: int, threads: int) -> dict[str, int]:
    """A row's decoding layout: processes, threads searching batches in each, and the torch
    threads of each search (``threads_per_worker``)."""
    each = (
        torch_threads_per_batch_thread(batch_threads, threads)
        if batch_threads > 1
        else threads_per_worker(workers, threads)
    )
    return {"workers": workers, "batch_threads": batch_threads, "threads_per_worker": each}


def _decode_setup(checkpoint: str, threads: int, limit: int):
    """``threads`` torch threads; the model, its tokenizers, the first ``limit`` test
    sentences and their references."""
    torch.set_num_threads(threads)
    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    split = prepare(cfg).splits["test_2016_flickr"]
    return model, src_tok, tgt_tok, list(split.src_text[:limit]), list(split.tgt_text[:limit])


def _interleaved(
    translators: dict[str, Translator], sources: list[str], refs: list[str], passes: int
) -> dict[str, Any]:
    """``passes`` timed passes of each translator, interleaved (so the machine's drift hits
    all): ``{name}_sent_s`` (median), ``{name}_bleu`` and ``same_output`` (the share of
    lines the last two translators agree on)."""
    seconds: dict[str, list[float]] = {name: [] for name in translators}
    hyps: dict[str, list[str]] = {}
    with torch.inference_mode():
        for translator in translators.values():
            translator.translate(sources[:16])  # warm-up
        for _ in range(passes):
            for name, translator in translators.items():
                start = time.perf_counter()
                hyps[name] = translator.translate(sources)
                seconds[name].append(time.perf_counter() - start)
    row: dict[str, Any] = {}
    for name in translators:
        row[f"{name}_sent_s"] = round(len(sources) / statistics.median(seconds[name]), 1)
        row[f"{name}_bleu"] = score(hyps[name], [refs], metrics=("bleu",))["bleu"]
    first, second = list(hyps.values())[:2]
    row["same_output"] = round(sum(a == b for a, b in zip(first, second)) / max(1, len(sources)), 3)
    return row


def bench_decode_config(method: str, workers: int, batch_threads: int = 1) -> DecodeConfig:
    """``greedy`` or ``beam5`` (GNMT alpha 1.0), at most 100 pieces, batches of 32."""
    beam = 5 if method == "beam5" else 1
    return DecodeConfig(
        method="beam" if beam > 1 else "greedy",
        beam_size=beam,
        length_penalty=1.0,
        max_len_a=0.0,
        max_len_b=100,
        max_tokens=1_000_000,  # batches of 32 sentences, as the peers decode
        max_sentences=32,
        workers=workers,
        batch_threads=batch_threads,
    )


# --- int8 ------------------------------------------------------------------------------
def int8_decode_speed(
    checkpoint: str,
    method: str,
    threads: int,
    limit: int,
    workers: int = 1,
    passes: int = 3,
    batch_threads: int = 1,
) -> dict[str, Any]:
    """:func:`compare_int8` on the first ``limit`` test sentences, ``threads`` torch threads
    split between ``workers`` processes or ``batch_threads`` threads."""
    model, src_tok, tgt_tok, sources, refs = _decode_setup(checkpoint, threads, limit)
    row = compare_int8(
        model, src_tok, tgt_tok, sources, refs, method, workers, passes, batch_threads
    )
    return {**row, **_layout(workers, batch_threads, threads)}


def compare_int8(
    model,
    src_tok,
    tgt_tok,
    sources: list[str],
    refs: list[str],
    method: str,
    workers: int = 1,
    passes: int = 3,
    batch_threads: int = 1,
) -> dict[str, Any]:
    """Decode ``sources`` with ``model`` in fp32 and in int8, ``passes`` timed passes each,
    interleaved; medians of sentences/s, their ratio, BLEU and identical outputs."""
    decode = bench_decode_config(method, workers, batch_threads)
    translators = {
        "fp32": Translator(model, src_tok, tgt_tok, decode),
        "int8": Translator(quantize_for_cpu(model), src_tok, tgt_tok, decode),
    }
    row: dict[str, Any] = {"method": method, "sentences": len(sources), "workers": workers}
    row.update(passes=passes, **_interleaved(translators, sources, refs, passes))
    row["int8_speedup"] = round(row["int8_sent_s"] / row["fp32_sent_s"], 3)
    return row


# --- shortlist -------------------------------------------------------------------------
def shortlist_decode_speed(
    checkpoint: str,
    method: str,
    threads: int,
    limit: int,
    workers: int = 1,
    passes: int = 3,
    k: int = 50,
    batch_threads: int = 1,
) -> dict[str, Any]:
    """:func:`compare_shortlist` on the first ``limit`` test sentences (the checkpoint's
    lexical table, rebuilt from its run's data when it has none)."""
    model, src_tok, tgt_tok, sources, refs = _decode_setup(checkpoint, threads, limit)
    _, _, _, cfg = load_for_inference(checkpoint)
    lexical = load_lexical_table(checkpoint, cfg, src_tok, tgt_tok)
    row = compare_shortlist(
        model, src_tok, tgt_tok, lexical, sources, refs, method, workers, passes, k, batch_threads
    )
    return {**row, **_layout(workers, batch_threads, threads)}


def compare_shortlist(
    model,
    src_tok,
    tgt_tok,
    lexical: LexicalTable,
    sources: list[str],
    refs: list[str],
    method: str,
    workers: int = 1,
    passes: int = 3,
    k: int = 50,
    batch_threads: int = 1,
) -> dict[str, Any]:
    """Decode ``sources`` with the full output layer (``full``) and through a ``k``
    shortlist (``shortlist``), ``passes`` timed passes each, interleaved; medians of
    sentences/s, their ratio, BLEU, identical outputs and the mean candidates per sentence."""
    decode = bench_decode_config(method, workers, batch_threads)
    short = dataclasses.replace(decode, shortlist=k)
    translators = {
        "full": Translator(model, src_tok, tgt_tok, decode),
        "shortlist": Translator(model, src_tok, tgt_tok, short, lexical=lexical),
    }
    row: dict[str, Any] = {"method": method, "sentences": len(sources), "workers": workers}
    row.update(shortlist=k, passes=passes, **_interleaved(translators, sources, refs, passes))
    row["shortlist_speedup"] = round(row["shortlist_sent_s"] / row["full_sent_s"], 3)
    sizes = translators["shortlist"].shortlist().sizes([src_tok.encode(s) for s in sources])
    row["mean_candidates"] = round(sum(sizes) / max(1, len(sizes)), 1)
    row["vocab"] = len(tgt_tok)
    return row
