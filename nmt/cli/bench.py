"""``nmt-bench``: training and decoding speed of the reference RNN on this machine.

    nmt-bench                     # full: ~10 minutes on 2 cores, writes bench.json
    nmt-bench --quick             # under 3 minutes (short timings, a 100-update model)
    nmt-bench --checkpoint runs/quickstart/<run>   # decode speed of a model you trained
    nmt-bench --serve             # nmt-serve under 1, 8, 32 clients, batching on and off

See :mod:`nmt.bench` and :mod:`nmt.bench_decode` for what each number means. Quote medians
and ratios measured in the same run: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nmt.bench import plan, run_bench
from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.errors import NMTError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-bench",
        "Training and decoding speed of the reference RNN on this machine (JSON).",
        [
            "nmt-bench                     # full: ~10 minutes on 2 cores, writes bench.json",
            "nmt-bench --quick             # under 3 minutes",
            "nmt-bench --checkpoint runs/quickstart/<run> --out mine.json",
            "nmt-bench --serve --checkpoint runs/quickstart/<run>   # writes bench_serve.json",
        ],
        notes="Quote medians and ratios measured in the same run: these machines are noisy.",
    )
    p.add_argument("--quick", action="store_true", help="finish in under 3 minutes")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--checkpoint", help="decode with this trained run/checkpoint")
    p.add_argument(
        "--decode-updates",
        type=int,
        help="training updates of the decode model (default 300, the peers' budget; 100 quick)",
    )
    p.add_argument("--out", help="JSON output (default bench.json; bench_serve.json with --serve)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="load-test nmt-serve instead (nmt.serve.loadtest): 1, 8 and 32 clients",
    )
    p.add_argument(
        "--serve-requests", type=int, help="requests per row of --serve (default 256; 64 quick)"
    )
    return p.parse_args(argv)


def run_serve(args: argparse.Namespace) -> dict:
    """``--serve``: the load test of nmt-serve (needs the serve extra)."""
    try:
        from nmt.serve.loadtest import LoadPlan, format_serve_table, serve_bench
    except ImportError:
        raise NMTError(
            "nmt-bench --serve needs the serve extra: pip install -e '.[serve]'"
        ) from None
    if args.serve_requests is not None and args.serve_requests < 1:
        raise NMTError(f"--serve-requests must be at least 1 (got {args.serve_requests})")
    load = LoadPlan(requests=args.serve_requests or (64 if args.quick else 256))
    updates = args.decode_updates
    if updates is None:
        updates = plan(args.quick).decode_updates
    with tempfile.TemporaryDirectory(prefix="nmt-bench-") as work:
        result = serve_bench(args.checkpoint, args.threads, updates, Path(work), load)
    out = args.out or "bench_serve.json"
    Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_serve_table(result))
    print(f"wrote {out} ({result['wall_seconds']} s)")
    return result


def run(args: argparse.Namespace) -> dict:
    if args.serve:
        return run_serve(args)
    args.out = args.out or "bench.json"
    bench_plan = plan(args.quick)
    if args.decode_updates is not None:
        bench_plan.decode_updates = args.decode_updates
    mode = "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory(prefix="nmt-bench-") as work:
        result = run_bench(bench_plan, args.threads, args.checkpoint, Path(work), mode=mode)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(result))
    print(f"wrote {args.out} ({result['wall_seconds']} s)")
    return result


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


def _parts_table(
    rows: list[dict[str, Any]], key: str, title: str, fmt, missing: float | None = None
) -> list[str]:
    """A table of ``row[key]`` (a value per model part) for each training row; no lines
    when a row lacks it (an older bench.json). A part a row lacks shows ``missing``, or –."""
    values = [r.get(key) for r in rows]
    if not all(values):
        return []
    parts = list(dict.fromkeys(p for v in values for p in v))
    lines = ["", title, "| train | " + " | ".join(parts) + " |", "|---|" + "---:|" * len(parts)]
    for r, v in zip(rows, values):
        cells = [fmt(v.get(p, missing)) if v.get(p, missing) is not None else "–" for p in parts]
        feeding = "on" if r["input_feeding"] else "off"
        lines.append(f"| input feeding {feeding} | " + " | ".join(cells) + " |")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The bench's result as the Markdown tables docs/performance.md quotes."""
    lines = [
        f"nmt bench ({result['mode']}, {result['threads']} threads, torch {result['torch']}, "
        f"matmul peak {result['matmul']['gflops']} GFLOP/s)",
        "| train | tgt tok/update | tgt tok/s | ms/step | GFLOP/tok | % of peak | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["train"]:
        lines.append(
            f"| input feeding {'on' if r['input_feeding'] else 'off'} | "
            f"{r['tgt_tokens_per_update']} | {r['tgt_tok_s']} | {r['ms_per_step']} | "
            f"{r['flops_per_tgt_token'] / 1e9:.4f} | {100 * r['fraction_of_peak']:.1f} | "
            f"{r['peak_rss_mib']} |"
        )
    lines += _parts_table(
        result["train"],
        "time_split",
        "time split of a training step (torch.profiler, forward + backward)",
        lambda value: f"{100 * value:.1f} %",
        missing=0.0,
    )
    lines += _parts_table(
        result["train"],
        "part_fraction_of_peak",
        "each part's matmul FLOPs per second over its share of the step, % of the matmul peak",
        lambda value: f"{100 * value:.1f}",
    )
    dm = result["decode_model"]
    trained = (
        f"trained here for {dm['trained_updates']} updates (input feeding on)"
        if dm["trained_here"]
        else f"loaded from {dm['checkpoint']}"
    )
    lines += [
        "",
        f"decode test_2016_flickr, model {trained}",
        "| search | processes x batch threads x torch threads | sentences | sent/s | out tok/s | BLEU | chrF "
        "| peak RSS MiB (largest worker) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["decode"]:
        rss = f"{r['peak_rss_mib']}"
        if r["workers"] > 1:
            rss += f" ({r['worker_peak_rss_mib']})"
        lines.append(
            f"| {r['method']} | {layout(r)} | {r['sentences']} | "
            f"{r['sent_s']} | {r['out_tok_s']} | {r['bleu']} | {r['chrf']} | {rss} |"
        )
    int8 = result.get("decode_int8") or []
    if int8:
        lines += [
            "",
            f"int8 decoding (--quantize int8), passes interleaved with fp32, median of "
            f"{int8[0]['passes']} (fp32 measured again here, so it can differ from the table "
            "above)",
            "| search | processes x batch threads x torch threads | fp32 sent/s | int8 sent/s | int8 / fp32 "
            "| fp32 BLEU | int8 BLEU | same output |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
    for r in int8:
        lines.append(
            f"| {r['method']} | {layout(r)} | "
            f"{r['fp32_sent_s']} | {r['int8_sent_s']} | {r['int8_speedup']:.2f} | "
            f"{r['fp32_bleu']} | {r['int8_bleu']} | {100 * r['same_output']:.0f} % |"
        )
    return "\n".join(lines + shortlist_table(result.get("decode_shortlist") or []))


def layout(row: dict) -> str:
    """A decode row's processes x batch threads x torch threads (an older bench.json has no
    batch threads: 1)."""
    return f"{row['workers']} x {row.get('batch_threads', 1)} x {row['threads_per_worker']}"


def shortlist_table(rows: list[dict]) -> list[str]:
    """The lines of the shortlist rows (none for an older bench.json)."""
    if not rows:
        return []
    lines = [
        "",
        f"lexical shortlist (--shortlist {rows[0]['shortlist']}), passes interleaved with the "
        f"full output layer, median of {rows[0]['passes']}; mean candidates per sentence "
        f"{rows[0]['mean_candidates']} of {rows[0]['vocab']}",
        "| search | processes x batch threads x torch threads | full sent/s | shortlist sent/s | shortlist / full "
        "| full BLEU | shortlist BLEU | same output |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {layout(r)} | "
            f"{r['full_sent_s']} | {r['shortlist_sent_s']} | {r['shortlist_speedup']:.2f} | "
            f"{r['full_bleu']} | {r['shortlist_bleu']} | {100 * r['same_output']:.0f} % |"
        )
    return lines


if __name__ == "__main__":
    main()
