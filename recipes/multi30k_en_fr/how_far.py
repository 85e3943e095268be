"""Run: make how-far RUN=runs/multi30k_en_fr/<run>   (= python recipes/multi30k_en_fr/how_far.py RUN)

How far is a Multi30k run from issue #20's goals (test2016 >= 60, test2017 >= 52.8, mscoco
>= 54.7 cased sacreBLEU: OPUS-MT transformer-big's scores), and was the gap still closing when
training ended? Every ``step_*.pt`` the run kept (one per validation; keep them all with
``train.keep_last=60``, e.g. ``bash recipes/run.sh multi30k_en_fr train.keep_last=60``) is
decoded on the run's test sets with its beam search (the code of ``nmt-evaluate``; scores in
``RUN/curve/step_*/results.json``, in ``RUN/curve_int8`` with ``--quantize int8``), then the
test BLEU is drawn against the minutes of training, next to the validation BLEU and the goals. A second table asks whether the gap is
the words: the last checkpoint's BLEU on the test sentences whose source words all occur in
the training pairs against those with a word they lack, and how many source words the
training data has seldom seen. Checkpoints already scored are skipped, so the script
resumes where it stopped:

    python recipes/multi30k_en_fr/how_far.py runs/multi30k_en_fr/cpu90-seed2 [--every 2]
        [--plot recipes/multi30k_en_fr/how_far.png] [--table how_far.md] [--quantize int8]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from nmt.cli.common import run_guarded
from nmt.cli.decode_flags import add_quantize_flag
from nmt.cli.evaluate import evaluate, parse_args
from nmt.config import from_plain
from nmt.data.prepare import prepare
from nmt.errors import NMTError
from nmt.report import cells_row, number, with_elapsed
from nmt.scoring import score
from nmt.train.checkpoint import load_checkpoint
from nmt.train.metrics import METRICS_NAME, read_metrics

# OPUS-MT transformer-big, the goals of issue #20 (cased sacreBLEU).
GOALS = {"test_2016_flickr": 60.0, "test_2017_flickr": 52.8, "test_2017_mscoco": 54.7}
SHORT = {
    "test_2016_flickr": "test2016",
    "test_2017_flickr": "test2017",
    "test_2017_mscoco": "mscoco",
}


# 1. The checkpoints to score: every --every-th kept step_*.pt, always the last one.
def pick_checkpoints(run: Path, every: int) -> list[Path]:
    found = sorted(run.glob("step_*.pt"))
    return found[::-1][::every][::-1]  # counted back from the last checkpoint


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("_")[1])


# 2. Score one checkpoint (or read its earlier scores).
def score_checkpoint(checkpoint: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    results = out / "results.json"
    if not results.is_file():
        print(f"[how-far] decoding the test sets with {checkpoint.name}", flush=True)
        evaluate(parse_args([str(checkpoint), "--out", str(out), "--no-lc-tok", *extra]))
    return json.loads(results.read_text())["splits"]


# 3. Each checkpoint's place in training: wall time and validation BLEU from metrics.jsonl.
def training_points(run: Path) -> dict[int, dict[str, Any]]:
    """``{step: {"minutes", "valid_bleu"}}`` for every step that has a record
    (``minutes`` of training wall time, as ``nmt-report`` reckons it)."""
    path = run / METRICS_NAME
    if not path.is_file():
        raise NMTError(f"{path} is missing: pass a run folder that nmt-train wrote")
    records = read_metrics(path)
    points: dict[int, dict[str, Any]] = {}
    for elapsed, r in with_elapsed(records):
        if "step" not in r or elapsed is None:
            continue
        point = points.setdefault(r["step"], {})
        point["minutes"] = elapsed / 60
        if r.get("split") == "valid" and "bleu" in r:
            point["valid_bleu"] = r["bleu"]
    return points


def curve_rows(
    run: Path, checkpoints: list[Path], scores: Path, extra: list[str]
) -> list[dict[str, Any]]:
    points = training_points(run)
    rows = []
    for ckpt in checkpoints:
        step = step_of(ckpt)
        # A checkpoint written after the last logged step (the end of the time budget)
        # takes the newest record's time.
        known = [s for s in points if s <= step] or [min(points)]
        point = points[max(known)]
        splits = score_checkpoint(ckpt, scores / ckpt.stem, extra)
        rows.append(
            {
                "step": step,
                "minutes": round(point["minutes"], 2),
                "valid_bleu": points.get(step, {}).get("valid_bleu"),
                "test_bleu": {name: s["bleu"] for name, s in splits.items()},
            }
        )
    return rows


# 4. Is it the words? The last checkpoint's test BLEU on the sentences whose source words
#    all occur in the training data against those with a word it never saw, and how much of
#    each test set is made of words the training data has seldom.
def words(line: str) -> list[str]:
    return re.findall(r"\w+", line.lower())


def coverage_rows(checkpoint: Path, scores: Path) -> list[dict[str, Any]]:
    """Per test split: the sentences with all source words seen in the paired training
    text and their BLEU, the same for the rest, and the share of source words seen fewer
    than 1 / 5 / 100 times."""
    cfg = from_plain(load_checkpoint(checkpoint)["config"])
    seen = Counter(w for line in prepare(cfg).train_text["src"] for w in words(line))
    folder = scores / checkpoint.stem  # what score_checkpoint wrote for it
    rows = []
    for split in json.loads((folder / "results.json").read_text())["splits"]:
        src, ref, hyp = (
            (folder / f"{split}.{ext}").read_text().splitlines() for ext in ("src", "ref", "hyp")
        )
        unseen = [any(seen[w] == 0 for w in words(s)) for s in src]
        tokens = [w for s in src for w in words(s)]
        row: dict[str, Any] = {"split": split, "sentences": len(src)}
        for name, keep in (("all_seen", False), ("unseen", True)):
            idx = [i for i, u in enumerate(unseen) if u == keep]
            pairs = ([hyp[i] for i in idx], [[ref[i] for i in idx]])
            bleu = score(*pairs, metrics=("bleu",))["bleu"] if idx else None
            row[name] = {"sentences": len(idx), "bleu": bleu}
        for below in (1, 5, 100):  # share of source words seen fewer times in training
            row[f"tokens_seen_under_{below}"] = sum(seen[w] < below for w in tokens) / len(tokens)
        rows.append(row)
    return rows


def coverage_markdown(rows: list[dict[str, Any]]) -> str:
    head = ["split", "sentences", "all words seen: n, BLEU", "a word unseen: n, BLEU"]
    head.append("source words seen 0 / <5 / <100 times in training")
    lines = [cells_row(head), "|---|---:|---:|---:|---:|"]
    for r in rows:
        cells = [SHORT.get(r["split"], r["split"]), str(r["sentences"])]
        for part in (r["all_seen"], r["unseen"]):
            cells.append(f"{part['sentences']}, {number(part['bleu'], '{:.2f}')}")
        cells.append(" / ".join(f"{100 * r[f'tokens_seen_under_{b}']:.1f} %" for b in (1, 5, 100)))
        lines.append(cells_row(cells))
    return "\n".join(lines) + "\n"


# 5. The tables and the plot.
def markdown(rows: list[dict[str, Any]]) -> str:
    splits = list(rows[-1]["test_bleu"])
    head = ["step", "minutes", "val BLEU (greedy)", *(SHORT.get(s, s) for s in splits)]
    lines = [cells_row(head), "|" + "---:|" * len(head)]
    for r in rows:
        cells = [f"{r['step']:,}", f"{r['minutes']:.1f}", number(r["valid_bleu"], "{:.2f}")]
        cells += [f"{r['test_bleu'].get(s, float('nan')):.2f}" for s in splits]
        lines.append(cells_row(cells))
    goals = ["goal", "", "", *(f"{GOALS[s]:g}" if s in GOALS else "–" for s in splits)]
    lines.append(cells_row(goals))
    gap = ["gap at the end", "", ""]
    gap += [f"{rows[-1]['test_bleu'][s] - GOALS[s]:+.2f}" if s in GOALS else "–" for s in splits]
    lines.append(cells_row(gap))
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    minutes = [r["minutes"] for r in rows]
    for split in rows[-1]["test_bleu"]:
        values = [r["test_bleu"][split] for r in rows]
        line = ax.plot(minutes, values, marker="o", ms=3, label=f"{SHORT.get(split, split)}")[0]
        if split in GOALS:
            ax.axhline(GOALS[split], color=line.get_color(), ls=":", lw=1.5)
            gap = values[-1] - GOALS[split]
            ax.annotate(
                f"{gap:+.1f} to goal",
                (minutes[-1], values[-1]),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
                color=line.get_color(),
            )
    valid = [(r["minutes"], r["valid_bleu"]) for r in rows if r["valid_bleu"] is not None]
    if valid:
        ax.plot(*zip(*valid), color="grey", ls="--", lw=1, label="validation (greedy)")
    ax.plot([], [], color="black", ls=":", label="goal (OPUS-MT transformer-big)")
    ax.set(xlabel="training minutes", ylabel="cased sacreBLEU", title=title)
    ax.set_xlim(0, max(minutes) * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", type=Path, help="a run folder with its step_*.pt and metrics.jsonl")
    p.add_argument("--every", type=int, default=1, help="score every N-th checkpoint")
    p.add_argument("--plot", type=Path, help="PNG to write (default: RUN/curve/how_far.png)")
    p.add_argument("--table", type=Path, help="markdown table to write (also printed)")
    p.add_argument("--title", default="Multi30k en→fr: test BLEU during training")
    add_quantize_flag(p)  # --quantize int8: faster on the CPU
    args = p.parse_args(argv)
    if args.every < 1:
        p.error(f"--every must be at least 1, got {args.every}")
    checkpoints = pick_checkpoints(args.run, args.every)
    if not checkpoints:
        p.error(f"{args.run} has no step_*.pt: train with train.keep_last=60 to keep them")
    extra = ["--quantize", args.quantize] if args.quantize else []
    # int8 scores get a folder of their own, so they never mix with fp32 ones.
    scores = args.run / ("curve_int8" if args.quantize else "curve")
    rows = run_guarded(curve_rows, args.run, checkpoints, scores, extra)
    coverage = run_guarded(coverage_rows, checkpoints[-1], scores)
    record = {"curve": rows, "coverage": coverage}
    (scores / "curve.json").write_text(json.dumps(record, indent=1) + "\n")
    table = markdown(rows) + "\n" + coverage_markdown(coverage)
    if args.table:
        args.table.write_text(table)
    plot(rows, args.plot or scores / "how_far.png", args.title)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
