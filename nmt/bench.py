"""Speed benchmark of the reference RNN (the shape of ``shared/peers-bench``).

Each phase runs in its own child process, so its peak RSS is its own:

1. ``matmul``: this machine's fp32 matrix-multiply peak (GFLOP/s), measured now.
2. ``train``: the reference model (joint unigram 8k, per-side vocabularies, embeddings
   256, 1-layer bi-GRU encoder 2x128, GRU decoder 256, Bahdanau attention, dropout 0.2,
   Adam 1e-3, no label smoothing, ~2,000 non-pad target tokens per update), input feeding
   off and on: median target tokens/s and ms per :meth:`Trainer.train_step` after warm-up,
   model FLOPs per target token (from the architecture) and the fraction of the peak.
   A few more steps run under ``torch.profiler`` to split the step's time between
   encoder, decoder RNN, attention, output layer + loss and optimizer (:mod:`nmt.profiling`).
3. ``decode``: a *trained* model translates Multi30k test_2016_flickr greedily and with beam
   5 (GNMT alpha 1.0, at most 100 pieces, batches of 32 sentences): sentences/s, output
   tokens/s, BLEU. The model is the peers' exact architecture (input feeding on) trained
   here for the peers' budget, 300 updates of ~2,000 target tokens (``--checkpoint`` loads
   another), so its BLEU can be set beside theirs.
4. ``decode_int8``: the same model and sentences decoded in fp32 and in int8
   (:func:`nmt.models.quantize.quantize_for_cpu`), their timed passes interleaved (fp32,
   int8, fp32, ...) so that the machine's drift hits both: median sentences/s of each,
   int8 / fp32, the BLEU of each and the share of identical outputs.

5. ``decode_shortlist``: the same with the full output layer and through a lexical shortlist
   (``decode.shortlist=50``, :mod:`nmt.search.shortlist`), passes interleaved: median
   sentences/s of each, their ratio, BLEU, identical outputs, mean candidates per sentence.

Phases 3 to 5 are in :mod:`nmt.bench_decode`; this module trains their model and runs
every phase (:func:`run_bench`).
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from nmt.bench_decode import (
    decode_speed,
    int8_decode_speed,
    peak_rss_mib,
    shortlist_decode_speed,
)
from nmt.config import conf_dir, register_configs
from nmt.data.batching import TokenBatchSampler, pair_lengths
from nmt.data.prepare import prepare
from nmt.profiling import step_time_split
from nmt.search.threads import torch_threads_per_batch_thread
from nmt.search.workers import threads_per_worker
from nmt.train.distributed import DistInfo
from nmt.train.run import train
from nmt.train.runfolder import StopSignal
from nmt.train.seq2seq_task import Seq2SeqTask
from nmt.train.trainer import Trainer

REFERENCE = [
    "data=multi30k_en_fr",
    "tokenizer.restrict_vocab=true",
    "model.cell=gru",
    "model.attention=bahdanau",
    "model.layers=1",
    "model.bidirectional=true",
    "model.emb_dim=256",
    "model.hidden_dim=256",
    "model.dropout=0.2",
    "model.bridge=none",  # the peers start the decoder from the encoder's final state
    "model.attentional_vector=linear",  # W [c; h] + b, no tanh: eole's and OpenNMT-py's "mlp"
    "train.label_smoothing=0.0",
    "train.lr=0.001",
    "train.schedule=constant",
    "train.clip_norm=5.0",
]
TARGET_TOKENS_PER_UPDATE = 2000


@dataclass
class BenchPlan:
    """How much each phase does (:func:`plan` gives the full and quick ones)."""

    warmup: int = 10  # untimed training steps
    steps: int = 60  # timed training steps
    profile_steps: int = 5  # steps under torch.profiler for the time split
    decode_updates: int = 300  # training budget of the decode model (the peers' budget)
    decode_sentences: int = 1000  # of test_2016_flickr
    int8_passes: int = 3  # timed passes of each of fp32 and int8 (interleaved)
    shortlist: int = 50  # decode.shortlist of the shortlist rows (timed int8_passes times)
    tokens_per_update: int = TARGET_TOKENS_PER_UPDATE
    overrides: list[str] = field(default_factory=list)  # on top of REFERENCE


def plan(quick: bool) -> BenchPlan:
    if quick:
        return BenchPlan(
            warmup=5,
            steps=15,
            profile_steps=3,
            decode_updates=100,
            decode_sentences=500,
            int8_passes=1,
        )
    return BenchPlan()


def compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


# --- 1. matmul peak --------------------------------------------------------------------
def matmul_peak(threads: int, size: int = 2048, reps: int = 7) -> dict[str, Any]:
    """Median GFLOP/s of a ``size x size`` fp32 matmul (the roofline reference)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return {"gflops": round(2 * size**3 / statistics.median(times) / 1e9, 1), "size": size}


# --- 2. training speed -----------------------------------------------------------------
def flops_by_part(
    model_cfg, src_vocab: int, tgt_vocab: int, src_per_tgt: float, src_len: float
) -> dict[str, float]:
    """Training FLOPs per target token, 3 x (2 x forward multiply-adds), per part of the
    model, named as :func:`nmt.profiling.step_time_split` names them.

    Counts the matmuls (embedding lookups, activations and the softmax are not FLOP-bound):
    encoder per source token (scaled by source/target length), decoder RNN, attention
    (query/keys projections, scores and context over ``src_len`` positions, and the
    attentional layer ``W [h; c]``, which the profiler charges to attention too) and the
    output projection.
    """
    E, H, L = model_cfg.emb_dim, model_cfg.hidden_dim, model_cfg.layers
    gates = {"gru": 3, "lstm": 4, "rnn": 1}[model_cfg.cell]
    dirs = 2 if model_cfg.bidirectional else 1
    h = H // dirs
    enc = 0.0
    for layer in range(L):
        inp = E if layer == 0 else H
        enc += dirs * gates * (inp * h + h * h)
    dec_in = E + (H if model_cfg.input_feeding and model_cfg.attention != "none" else 0)
    dec = sum(gates * ((dec_in if i == 0 else H) * H + H * H) for i in range(L))
    att = 0.0
    if model_cfg.attention != "none":
        if model_cfg.attention == "bahdanau":
            att = H * H + src_per_tgt * H * H + src_len * H + src_len * H  # q, keys, v, ctx
        else:
            att = H * H + 2 * src_len * H
        att += 2 * H * H  # attentional vector W[h; c]
    forward_macs = {
        "encoder": src_per_tgt * enc,
        "decoder RNN": dec,
        "attention": att,
        "output layer + loss": H * tgt_vocab,
    }
    return {part: 3 * 2 * macs for part, macs in forward_macs.items()}


def flops_per_target_token(
    model_cfg, src_vocab: int, tgt_vocab: int, src_per_tgt: float, src_len: float
) -> float:
    """Training FLOPs per target token: the sum of :func:`flops_by_part`."""
    return sum(flops_by_part(model_cfg, src_vocab, tgt_vocab, src_per_tgt, src_len).values())


def part_fraction_of_peak(row: dict[str, Any], peak_gflops: float) -> dict[str, float]:
    """Each part's achieved FLOP rate as a fraction of the matmul peak: its FLOPs per token
    times tokens/s, over the share of the step's time the profiler charged to it."""
    out = {}
    for part, flops in row["flops_by_part"].items():
        share = row["time_split"].get(part, 0.0)
        if flops and share > 0:
            out[part] = round(flops * row["tgt_tok_s"] / share / 1e9 / peak_gflops, 3)
    return out


def train_speed(
    overrides: list[str], threads: int, warmup: int, steps: int, profile_steps: int
) -> dict[str, Any]:
    """Time ``Trainer.train_step`` on the real batches of the first epoch, then profile a
    few more steps for the time split."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = compose(overrides)
    task = Seq2SeqTask(cfg, DistInfo(), torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, task, Path(tmp), DistInfo(), torch.device("cpu"), StopSignal())
        batches = task.epoch_batches(0)
        times, tokens = [], []
        for i, batch in enumerate(batches[: warmup + steps]):
            n = task.n_tokens(batch)
            t = time.perf_counter()
            trainer.train_step([batch])
            if i >= warmup:
                times.append(time.perf_counter() - t)
                tokens.append(n)
        rss = peak_rss_mib()  # before profiling: the profiler's event records are not training
        profiled = batches[warmup + steps : warmup + steps + profile_steps]
        split = step_time_split(task.model, lambda b: trainer.train_step([b]), profiled)
    data = task.train_split
    src_tokens = sum(len(x) for x in data.src)
    tgt_tokens = sum(len(y) + 1 for y in data.tgt)
    by_part = flops_by_part(
        cfg.model,
        task.src_tok.vocab_size,
        task.tgt_tok.vocab_size,
        src_tokens / tgt_tokens,
        src_tokens / len(data),
    )
    flops = sum(by_part.values())
    rates = [n / t for n, t in zip(tokens, times)]
    return {
        "input_feeding": bool(cfg.model.input_feeding),
        "params": sum(p.numel() for p in task.model.parameters()),
        "vocab": [task.src_tok.vocab_size, task.tgt_tok.vocab_size],
        "max_tokens": int(cfg.train.max_tokens),
        "tgt_tokens_per_update": round(statistics.mean(tokens)),
        "timed_steps": len(times),
        "tgt_tok_s": round(statistics.median(rates)),
        "ms_per_step": round(1000 * statistics.median(times), 1),
        "flops_per_tgt_token": round(flops),
        "flops_by_part": {part: round(f) for part, f in by_part.items()},
        "peak_rss_mib": round(rss),
        "time_split": split,
    }


def calibrate_max_tokens(overrides: list[str], target: int = TARGET_TOKENS_PER_UPDATE) -> int:
    """The ``train.max_tokens`` (which counts padding) giving ~``target`` real target
    tokens per update with our length-sorted batches."""
    cfg = compose(overrides)
    lengths = pair_lengths(prepare(cfg).splits["train"])
    tgt = (lengths[:, 1] + 1).tolist()  # y + EOS
    guess = target
    for _ in range(3):
        batches = list(TokenBatchSampler(lengths, max_tokens=guess, seed=0).batches())
        mean = statistics.mean(sum(tgt[i] for i in b) for b in batches)
        guess = max(1, round(guess * target / mean))
    return guess


# --- 3. the decode model (the decoding phases: nmt.bench_decode) -----------------------
def train_decode_model(overrides: list[str], out: Path, updates: int, threads: int) -> dict:
    """Train the decode model for exactly ``updates`` updates (no time limit)."""
    start = time.perf_counter()
    best = train(
        compose(
            [
                *overrides,
                f"train.max_steps={updates}",
                "train.max_epochs=0",
                "train.max_minutes=0",
                f"train.threads={threads}",
            ]
        ),
        out_dir=out,
    )
    return {
        "trained_updates": updates,
        "valid_bleu_greedy": round(best, 2),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def describe_layout(workers: int, batch_threads: int, threads: int) -> str:
    """``2 processes x 1 thread``, ``1 process, 2 batch threads x 1 thread``, ..."""
    if batch_threads > 1:
        each = torch_threads_per_batch_thread(batch_threads, threads)
        return f"1 process, {batch_threads} batch threads x {each} torch thread(s)"
    return f"{workers} process(es) x {threads_per_worker(workers, threads)} torch thread(s)"


def in_child(fn, *args):
    """Run ``fn(*args)`` in a fresh process (its own peak RSS); return its result.

    Not a ``multiprocessing.Pool``: its daemonic process could not fork decode workers."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _in_process(fn, *args):
    return fn(*args)


def run_bench(
    bench_plan: BenchPlan,
    threads: int,
    checkpoint: str | None,
    work: Path,
    log=print,
    mode: str = "full",
    isolate: bool = True,
) -> dict[str, Any]:
    """All phases; returns the JSON-ready result. ``isolate=False`` runs them in this
    process (quicker to start; the peak RSS figures are then this process's)."""
    started = time.time()
    call = in_child if isolate else _in_process
    bp = bench_plan
    result: dict[str, Any] = {
        "mode": mode,
        "threads": threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {mp.cpu_count()} cores",
    }
    log("matmul peak ...")
    result["matmul"] = call(matmul_peak, threads)
    peak = result["matmul"]["gflops"]
    log(f"  {peak} GFLOP/s")
    reference = [*REFERENCE, *bp.overrides]
    max_tokens = call(calibrate_max_tokens, reference, bp.tokens_per_update)
    base = [*reference, f"train.max_tokens={max_tokens}"]
    result["train"] = []
    for feeding in (False, True):
        log(f"train speed, input feeding {'on' if feeding else 'off'} ...")
        row = call(
            train_speed,
            [*base, f"model.input_feeding={feeding}"],
            threads,
            bp.warmup,
            bp.steps,
            bp.profile_steps,
        )
        row["achieved_gflops"] = round(row["tgt_tok_s"] * row["flops_per_tgt_token"] / 1e9, 3)
        row["fraction_of_peak"] = round(row["achieved_gflops"] / peak, 3)
        row["roofline_tgt_tok_s"] = round(peak * 1e9 / row["flops_per_tgt_token"])
        row["part_fraction_of_peak"] = part_fraction_of_peak(row, peak)
        result["train"].append(row)
        log(f"  {row['tgt_tok_s']} tgt tok/s, {row['ms_per_step']} ms/step")
    if checkpoint:
        result["decode_model"] = {"checkpoint": checkpoint, "trained_here": False}
    else:
        log(f"training the decode model for {bp.decode_updates} updates (input feeding on) ...")
        out = work / "decode_model"
        info = call(
            train_decode_model,
            [*base, "model.input_feeding=true"],
            out,
            bp.decode_updates,
            threads,
        )
        # last.pt: the model after exactly that many updates (best.pt may be an earlier one)
        checkpoint = str(out / "last.pt")
        result["decode_model"] = {"checkpoint": checkpoint, "trained_here": True, **info}
    result["decode"], result["decode_int8"], result["decode_shortlist"] = [], [], []
    # One process with all threads; then (with 2+ threads) one single-threaded worker process
    # per thread (nmt.search.workers), and one process whose threads each search their own
    # batches with one torch thread (nmt.search.threads): small decoder steps use the cores
    # best that way.
    layouts = [(1, 1), (threads, 1), (1, threads)] if threads > 1 else [(1, 1)]
    for workers, batch_threads in layouts:
        for method in ("greedy", "beam5"):
            log(f"decode {method}, {describe_layout(workers, batch_threads, threads)} ...")
            args = (checkpoint, method, threads, bp.decode_sentences, workers)
            row = call(decode_speed, *args, batch_threads)
            result["decode"].append(row)
            log(f"  {row['sent_s']} sent/s, BLEU {row['bleu']}")
            row = call(int8_decode_speed, *args, bp.int8_passes, batch_threads)
            result["decode_int8"].append(row)
            log(f"  fp32 vs int8: {row['fp32_sent_s']} vs {row['int8_sent_s']} sent/s")
            row = call(shortlist_decode_speed, *args, bp.int8_passes, bp.shortlist, batch_threads)
            result["decode_shortlist"].append(row)
            log(f"  full vs shortlist: {row['full_sent_s']} vs {row['shortlist_sent_s']} sent/s")
    result["wall_seconds"] = round(time.time() - started, 1)
    return result
