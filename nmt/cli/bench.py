"""``nmt-bench``: training and decoding speed of the reference RNN on this machine.

    nmt-bench                     # full: ~10 minutes on 2 cores, writes bench.json
    nmt-bench --quick             # under 3 minutes (short timings, a 100-update model)
    nmt-bench --checkpoint runs/quickstart/<run>   # decode speed of a model you trained

See :mod:`nmt.bench` for what each number means. Quote medians and ratios measured in
the same run: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from nmt.cli import make_parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-bench",
        "Training and decoding speed of the reference RNN on this machine (JSON).",
        [
            "nmt-bench                     # full: ~10 minutes on 2 cores, writes bench.json",
            "nmt-bench --quick             # under 3 minutes",
            "nmt-bench --checkpoint runs/quickstart/<run> --out mine.json",
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
    p.add_argument("--out", default="bench.json", help="JSON output (default bench.json)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    from nmt.bench import format_table, plan, run_bench

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
    from nmt.cli.common import run_guarded

    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
