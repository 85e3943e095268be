"""``nmt-report RUN [RUN ...]``: compare training runs in one Markdown table (or JSON).

Each RUN is a run folder of ``nmt-train``, or a folder whose subfolders are run folders (a
Hydra multirun folder, a study's parent folder). One row per run: the settings that differ
between the runs (``key=value``), parameters, updates, wall time, training speed (median
target tokens/s), the best validation metric with its step, bits/char for char-LM runs,
and the test scores of ``eval/results.json`` (``nmt-evaluate``). ``--plot`` draws the
learning curves, ``--buckets`` adds BLEU per source-length bucket (from ``eval/``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.errors import NMTError
from nmt.outputs import check_output_file, write_text
from nmt.report import (
    METRICS,
    build_rows,
    default_metric,
    markdown_table,
    read_runs,
    sort_rows,
)
from nmt.report_lengths import DEFAULT_EDGES, bucket_scores, buckets_table, parse_edges
from nmt.report_plots import plot_curves


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-report",
        "Compare training runs: one Markdown table (or JSON), learning curves, BLEU by "
        "sentence length.",
        [
            "nmt-report runs/a runs/b                      # two run folders",
            "nmt-report multirun/2024-05-01/12-00-00 --plot curves.png --out table.md",
            "nmt-report runs/embeddings_study --sort test_2016_flickr --buckets",
            "nmt-report runs/char_lm_* --json             # char-LM runs: best val loss first",
        ],
        notes="Sort columns: best (the metric), run, params, updates, wall_s, tok_s, "
        "SPLIT or SPLIT.bleu, SPLIT.chrf (test scores), or a differing setting's key (train.lr).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders of runs")
    p.add_argument(
        "--metric",
        help=f"validation metric to rank by: {', '.join(METRICS)} (default: bleu; loss, in "
        "nats/char, for char-LM runs); loss and ppl: lower is better",
    )
    p.add_argument("--sort", metavar="COLUMN", help="sort by this column (default: the metric)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON, not Markdown")
    p.add_argument("--out", metavar="FILE.md", help="also write the Markdown table there")
    p.add_argument("--plot", metavar="FILE.png", help="draw the validation curves there")
    p.add_argument(
        "--buckets",
        action="store_true",
        help="add BLEU per source-length bucket of each run's eval/<split>.src/.hyp/.ref",
    )
    p.add_argument(
        "--bucket-edges",
        default=",".join(map(str, DEFAULT_EDGES)),
        metavar="N,N,...",
        help="the last word count of each bucket (default: %(default)s = 1-10, 11-15, 16-20, "
        "21-25, 26+)",
    )
    p.add_argument("--title", help="a heading above the table, and the plot's title")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict]:
    if args.metric is not None and args.metric not in METRICS:
        raise NMTError(f"--metric {args.metric} is unknown: use one of {', '.join(METRICS)}")
    edges = parse_edges(args.bucket_edges)
    # Before any work, so a bad path never fails after reading every run.
    outputs = [(args.out, "--out"), (args.plot, "--plot")]
    for path, option in outputs:
        if path:
            check_output_file(path, option)
    runs = read_runs(args.runs)
    metric = args.metric or default_metric(runs)
    rows = build_rows(runs, metric)
    rows = sort_rows(rows, args.sort or "best")
    text = markdown_table(rows, args.title)
    if args.buckets:
        for row in rows:
            row["buckets"] = bucket_scores(Path(row["path"]), edges)
        if not any(row["buckets"] for row in rows):
            raise NMTError(
                "--buckets: none of the runs has eval/<split>.src, .hyp and .ref files: run "
                "nmt-evaluate on them first"
            )
        text += "\nBLEU by source length (words; sentences in parentheses):\n\n"
        text += buckets_table(rows, edges)
    if args.plot:
        plot_curves(runs, rows, Path(args.plot), args.title)
    if args.out:
        write_text(args.out, text, "--out file")
    print(json.dumps(rows, indent=1) if args.json else text, end="\n" if args.json else "")
    return rows


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
