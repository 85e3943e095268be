"""Run: make embeddings-study   (= python recipes/multi30k_en_fr/embeddings_study.py)

Do pretrained word vectors help an RNN translator, and when? Multi30k en->fr with 1,000,
3,000, 10,000 and 29,000 training pairs x four initialisations of both embedding tables:

* ``random``      — the default;
* ``word2vec``    — gensim skip-gram trained on the run's own training text plus the
                    145,000 English captions of Multi30k task 2 (``data.use_mono=true``);
* ``pretrained``  — GloVe 6B 50d (English) and fastText 300d (French), fine-tuned, with
                    sub-word means (``subword=mean``);
* ``frozen``      — the same vectors, kept fixed;

plus, at 3,000 pairs, ``pretrained`` without sub-word means (``pretrained_whole_words``, the
toolkit's default) and with a word-level vocabulary, and at 29,000 both pretrained arms through a learned projection
(``project=true``) instead of a table of the model's width. The small sizes run with 2 seeds. Every run is trained with the base
config ``embeddings_study.yaml`` and the per-size settings below, then its three test sets
are decoded with beam 5 (``nmt-evaluate``). Runs already finished are skipped, so the study
resumes where it stopped. At the end the table (markdown) and the plot are written:

    python recipes/multi30k_en_fr/embeddings_study.py [--jobs 2] [--out runs/embeddings_study]
    python recipes/multi30k_en_fr/embeddings_study.py --report-only   # table + plot again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPLITS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")

# 1. Per-size settings: the vocabulary, the batch and the epochs grow with the data, so every
#    run makes a few hundred to ~1,000 updates and fits the CPU budget (minutes on 1 thread).
SIZES = {
    1000: ["tokenizer.vocab_size=2000", "train.max_tokens=1000", "train.max_epochs=30", "model.dropout=0.3"],
    3000: ["tokenizer.vocab_size=4000", "train.max_tokens=1500", "train.max_epochs=20", "model.dropout=0.3"],
    10000: ["tokenizer.vocab_size=8000", "train.max_tokens=2500", "train.max_epochs=10"],
    29000: ["tokenizer.vocab_size=8000", "train.max_tokens=3000", "train.max_epochs=7"],
}  # fmt: skip
# Sub-word pieces take the mean vector of their words in the main pretrained arms (the
# default when the study ran; it then tied with whole-word vectors alone, now the default).
MEANS = ["embeddings.src.subword=mean", "embeddings.tgt.subword=mean"]
ARMS = {
    "random": ["embeddings=random"],
    "word2vec": ["embeddings=word2vec", "data.use_mono=true"],
    "pretrained": ["embeddings=pretrained", *MEANS],
    "frozen": ["embeddings=pretrained_frozen", *MEANS],
    "pretrained_whole_words": ["embeddings=pretrained"],
    "pretrained_word_vocab": [
        "embeddings=pretrained",
        *MEANS,
        "tokenizer=word",
        "tokenizer.vocab_size=16000",
    ],
    # The vectors through a learned projection instead of a table of the model's width.
    "pretrained_projected": [
        "embeddings=pretrained",
        *MEANS,
        "embeddings.src.project=true",
        "embeddings.tgt.project=true",
    ],
    "frozen_projected": [
        "embeddings=pretrained_frozen",
        *MEANS,
        "embeddings.src.project=true",
        "embeddings.tgt.project=true",
    ],
}
MAIN_ARMS = ("random", "word2vec", "pretrained", "frozen")


@dataclass(frozen=True)
class Job:
    size: int
    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.size}-{self.arm}-s{self.seed}"

    def overrides(self) -> list[str]:
        return (
            [f"data.train_limit={self.size}", f"train.seed={self.seed}"]
            + SIZES[self.size]
            + ARMS[self.arm]
        )


def plan(sizes: list[int], seeds_small: int) -> list[Job]:
    """The study's runs, largest first: the full-data answer comes earliest."""
    jobs = []
    for size in sorted(sizes, reverse=True):
        seeds = range(1, (seeds_small if size <= 3000 else 1) + 1)
        arms = list(MAIN_ARMS)
        if size == 3000:
            arms += ["pretrained_whole_words", "pretrained_word_vocab"]
        if size == 29000:
            arms += ["pretrained_projected", "frozen_projected"]
        jobs += [Job(size, arm, seed) for seed in seeds for arm in arms]
    return jobs


# 2. One run: train, then decode the three test sets with beam 5.
def run_job(job: Job, out: Path, extra: list[str], bin_dir: Path) -> dict | None:
    folder = out / job.name
    done = folder / "study.json"
    if done.is_file():
        return json.loads(done.read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cfg = ["--config-dir", str(HERE), "--config-name", "embeddings_study"]
    log = (out / f"{job.name}.log").open("w")
    start = time.time()
    train = [str(bin_dir / "nmt-train"), *cfg, *job.overrides(), *extra, f"hydra.run.dir={folder}"]
    if subprocess.run(train, env=env, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
        print(f"[study] {job.name}: training failed, see {log.name}", flush=True)
        return None
    trained = time.time()
    evaluate = [str(bin_dir / "nmt-evaluate"), str(folder), "--splits", *SPLITS, "--json"]
    if subprocess.run(evaluate, env=env, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
        print(f"[study] {job.name}: evaluation failed, see {log.name}", flush=True)
        return None
    results = json.loads((folder / "eval" / "results.json").read_text())
    record = {
        "job": job.name,
        "size": job.size,
        "arm": job.arm,
        "seed": job.seed,
        "command": " ".join(["nmt-train", *cfg[2:], *job.overrides(), *extra]),
        "train_s": round(trained - start),
        "eval_s": round(time.time() - trained),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "bleu": {s: results["splits"][s]["bleu"] for s in SPLITS},
        "chrf": {s: results["splits"][s]["chrf"] for s in SPLITS},
        "coverage": _coverage(folder),
    }
    done.write_text(json.dumps(record, indent=1) + "\n")
    print(f"[study] {job.name}: {record['bleu']} ({record['train_s']} s)", flush=True)
    return record


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [
            x.split(":", 1)[1].strip()
            for x in info.read_text().splitlines()
            if x.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return f"{os.cpu_count()} cores, {cpu}"


def _coverage(folder: Path) -> dict:
    """Per side, the shares of piece types and training tokens with vectors."""
    path = folder / "embeddings.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    keep = ("types", "tokens", "types_any", "tokens_any")
    return {side: {k: v for k, v in r.items() if k in keep} for side, r in report.items()}


def prepare_all(jobs: list[Job], extra: list[str], bin_dir: Path, out: Path) -> None:
    """Tokenize each distinct data setting once, before runs share the cache in parallel."""
    cfg = ["--config-dir", str(HERE), "--config-name", "embeddings_study"]
    seen = set()
    for job in jobs:
        data = [o for o in job.overrides() + extra if not o.startswith(("embeddings", "train."))]
        if tuple(data) in seen:
            continue
        seen.add(tuple(data))
        cmd = [str(bin_dir / "nmt-prepare"), *cfg, *data, f"hydra.run.dir={out}/prepare"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# 3. The table and the plot.
def report(out: Path, table_path: Path, plot_path: Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/study.json"))]
    if not records:
        return "no finished runs"
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["size"], r["arm"]), []).append(r)
    head = "| pairs | init | seeds | test2016 BLEU | test2017 BLEU | mscoco BLEU | train s / run |"
    lines = [head, "|---:|---|---:|---:|---:|---:|---:|"]
    for (size, arm), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _arm_order(kv[0][1]))):
        cells = []
        for s in SPLITS:
            values = [r["bleu"][s] for r in rs]
            cell = f"{statistics.mean(values):.2f}"
            if len(values) > 1:
                cell += " (" + " / ".join(f"{v:.2f}" for v in values) + ")"
            cells.append(cell)
        secs = statistics.mean(r["train_s"] for r in rs)
        lines.append(f"| {size:,} | {arm} | {len(rs)} | " + " | ".join(cells) + f" | {secs:.0f} |")
    table = "\n".join(lines) + "\n"
    table_path.write_text(table)
    _plot(groups, plot_path)
    return table


def _arm_order(arm: str) -> int:
    return list(ARMS).index(arm) if arm in ARMS else len(ARMS)


def _plot(groups: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, split in zip(axes, SPLITS):
        for arm in MAIN_ARMS:
            points = sorted(
                (size, [r["bleu"][split] for r in rs])
                for (size, a), rs in groups.items()
                if a == arm
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            line = ax.plot(xs, [statistics.mean(p[1]) for p in points], marker="o", label=arm)[0]
            for x, values in points:  # each seed as a faint dot
                ax.scatter([x] * len(values), values, color=line.get_color(), alpha=0.35, s=12)
        ax.set_xscale("log")
        ax.set_xlabel("training pairs")
        ax.set_title(split)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cased sacreBLEU (beam 5)")
    axes[0].legend()
    fig.suptitle("Multi30k en→fr: embedding initialisation vs training data")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=REPO / "runs" / "embeddings_study")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES))
    p.add_argument("--seeds", type=int, default=2, help="seeds for the sizes up to 3,000 pairs")
    p.add_argument("--only", nargs="*", help="run only these arms")
    p.add_argument("--bin", type=Path, default=Path(sys.executable).parent)
    p.add_argument("--table", type=Path, default=HERE / "embeddings_study.md")
    p.add_argument("--plot", type=Path, default=HERE / "embeddings_study.png")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = p.parse_args(argv)
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        p.error(f"--sizes {unknown[0]} has no settings: use some of {sorted(SIZES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        jobs = [j for j in plan(args.sizes, args.seeds) if not args.only or j.arm in args.only]
        print(f"[study] {len(jobs)} runs, {args.jobs} at a time, in {args.out}", flush=True)
        prepare_all(jobs, args.overrides, args.bin, args.out)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda j: run_job(j, args.out, args.overrides, args.bin), jobs))
        failed = sum(r is None for r in results)
        if failed:
            print(f"[study] {failed} runs failed (their logs are in {args.out})", flush=True)
    print(report(args.out, args.table, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
