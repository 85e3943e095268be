"""One short run that proves training and decoding on a CUDA GPU (``nmt-gpu-check``).

The phases, in order, each with its numbers in the result (and each saved as it ends, so a
run cut short keeps what it measured):

1. ``tests``: the CUDA-marked tests (``pytest -m cuda``, tests/test_cuda.py): a
   training step in fp32, bf16 and fp16 against the CPU's, beam search against the CPU's,
   checkpoints across devices; pass/fail counts and the failing tests' names.
2. ``prepare``: Multi30k with recipes/multi30k_en_fr's config through ``nmt-prepare`` (the
   data mirror ``NMT_DATA_MIRROR`` replaces the download, as for every recipe).
3. ``profile``: the recipe's model at this check's precision and token budget: warm-up
   steps, timed steps (the device synchronized around them: ms/step and target tokens/s),
   then a few steps under ``torch.profiler``: host vs device milliseconds per step and the
   top ops (:func:`nmt.profiling.op_time_summary`).
4. ``train``: the recipe for ``minutes`` (its cosine decay then ends with them) with
   ``train.device=cuda``, bf16 autocast and a GPU-sized ``train.max_tokens``: target tokens/s
   (median of the logged intervals after the first, validation excluded), peak CUDA memory
   (``torch.cuda.max_memory_allocated``), validation BLEU (greedy) after each epoch.
5. ``decode``: test_2016_flickr with beam 5 on the GPU with the run's ``best.pt``
   (GNMT alpha 1.0, batches of ``decode_batch`` sentences): sentences/s, BLEU, chrF.

A phase that fails records its ``error``; the phases that need a failed or skipped one are
``not_run``. ``ok`` says whether every phase ran (``--skip-tests`` may leave the tests out)
and every test passed.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from nmt.config import conf_dir, register_configs
from nmt.data.download import MIRROR_ENV
from nmt.data.prepare import prepare
from nmt.errors import NMTError, first_line
from nmt.inference import decode_settings, load_for_inference
from nmt.profiling import op_time_summary
from nmt.scoring import score
from nmt.search.translator import Translator
from nmt.train.distributed import DistInfo
from nmt.train.metrics import read_metrics
from nmt.train.run import train
from nmt.train.runfolder import StopSignal
from nmt.train.seq2seq_task import Seq2SeqTask
from nmt.train.trainer import Trainer

REPO = conf_dir().parent
RECIPE = "multi30k_en_fr"
TEST_SPLIT = "test_2016_flickr"
MIB = 2**20


@dataclass
class CheckPlan:
    """What the check runs (the command line's options)."""

    minutes: float = 3.0  # of training
    max_tokens: int = 12000  # train.max_tokens (the recipe's CPU budget is 3000)
    precision: str = "bf16"
    warmup_steps: int = 10  # before the timed and profiled steps
    timed_steps: int = 20
    profile_steps: int = 5
    decode_batch: int = 128  # sentences per beam-5 batch
    tests: bool = True
    test_timeout_s: int = 300
    run_dir: str = field(default_factory=lambda: time.strftime("runs/gpu_check/%Y-%m-%d_%H-%M-%S"))
    overrides: list[str] = field(default_factory=list)  # Hydra overrides, after the check's

    def train_overrides(self) -> list[str]:
        """The recipe's config as this check trains it."""
        return [
            "train.device=cuda",
            f"train.precision={self.precision}",
            f"train.max_minutes={self.minutes:g}",
            f"train.max_tokens={self.max_tokens}",
            "train.keep_last=0",  # no step checkpoints: last.pt and best.pt are enough here
            *self.overrides,
        ]


def cuda_missing() -> str | None:
    """The one line to print when there is no CUDA GPU to check; None when there is."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:  # no GPU could ever be seen: say what to install
        return (
            f"nmt-gpu-check: this torch ({torch.__version__}) is a CPU build: install a CUDA "
            "build of torch first, then `make install CONSTRAINTS=`; nothing measured, "
            "nothing written"
        )
    return (
        f"nmt-gpu-check: no CUDA GPU is visible (torch {torch.__version__}, CUDA build "
        f"{torch.version.cuda}): nothing measured, nothing written"
    )


def recipe_dir() -> Path:
    folder = REPO / "recipes" / RECIPE
    if not (folder / f"{RECIPE}.yaml").is_file():
        raise NMTError(
            f"{folder / (RECIPE + '.yaml')} is missing: nmt-gpu-check runs from a source "
            "checkout (make install installs nmt editable)"
        )
    return folder


def compose_recipe(overrides: list[str]):
    """The recipe's config, as ``nmt-train --config-dir recipes/... --config-name ...`` makes it."""
    register_configs()
    with initialize_config_dir(config_dir=str(recipe_dir()), version_base="1.3"):
        return compose(RECIPE, overrides=[*overrides, f"hydra.searchpath=[file://{conf_dir()}]"])


def commands(plan: CheckPlan) -> dict[str, str]:
    """Commands that reproduce each phase (training and decoding run in this process)."""
    recipe = f"--config-dir recipes/{RECIPE} --config-name {RECIPE}"
    return {
        "tests": "python -m pytest -q -m cuda tests/test_cuda.py",
        "prepare": f"nmt-prepare {recipe} {' '.join(plan.overrides)}".strip(),
        "train": f"nmt-train {recipe} {' '.join(plan.train_overrides())} "
        f"hydra.run.dir={plan.run_dir}",
        # The same search and scores; the check batches by sentences and times it in-process.
        "decode": f"nmt-evaluate {plan.run_dir} --splits {TEST_SPLIT} --beam 5 --device cuda",
    }


def environment() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "device": torch.cuda.get_device_name(0),
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "devices": torch.cuda.device_count(),
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "data_mirror": os.environ.get(MIRROR_ENV),
    }


# --- 1. tests ------------------------------------------------------------------------------
def run_cuda_tests(plan: CheckPlan) -> dict[str, Any]:
    """``pytest -m cuda`` in a child process over the checkout's test files that use the
    marker (collecting the whole suite would import every test module); its counts."""
    files = sorted(p for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    if not files:
        raise NMTError(f"no test file under {REPO / 'tests'} uses the cuda marker")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
        cmd += [f"--junitxml={report}", *(str(f.relative_to(REPO)) for f in files)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, timeout=plan.test_timeout_s, check=False)
        counts = junit_counts(report) if report.is_file() else {}
    return {
        **counts,
        "files": [str(f.relative_to(REPO)) for f in files],
        "returncode": proc.returncode,
        "seconds": round(time.perf_counter() - start, 1),
    }


def junit_counts(path: Path) -> dict[str, Any]:
    """Passed/failed/error/skipped counts and the failing tests of a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    bad = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    failed, errors = total["failures"], total["errors"]
    return {
        "passed": total["tests"] - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
        "failing": bad,
    }


# --- 2. prepare ----------------------------------------------------------------------------
def prepare_data(plan: CheckPlan) -> dict[str, Any]:
    """The recipe's data through ``nmt-prepare`` (a child process, the recipes' own path)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "nmt", "prepare", "--config-dir", str(recipe_dir())]
        cmd += ["--config-name", RECIPE, *plan.overrides, f"hydra.run.dir={tmp}/prepare"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False)  # here: the cache (.nmt_cache) is relative
    if proc.returncode != 0:
        raise NMTError(f"nmt-prepare failed (exit {proc.returncode}): see its output above")
    return {"seconds": round(time.perf_counter() - start, 1)}


# --- 3. profile ----------------------------------------------------------------------------
def profile_training(plan: CheckPlan) -> dict[str, Any]:
    """Timed and profiled training steps of the recipe's model on real batches."""
    cfg = compose_recipe(plan.train_overrides())
    device = torch.device("cuda")
    torch.manual_seed(cfg.train.seed)
    task = Seq2SeqTask(cfg, DistInfo(), device)
    batches = task.epoch_batches(0)
    order = [batches[i % len(batches)] for i in range(plan.warmup_steps + plan.timed_steps)]
    profiled = [batches[-1 - i % len(batches)] for i in range(plan.profile_steps)]
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, task, Path(tmp), DistInfo(), device, StopSignal())
        for batch in order[: plan.warmup_steps]:
            trainer.train_step([batch])
        timed = order[plan.warmup_steps :]
        torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in timed:
            trainer.train_step([batch])
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(task.n_tokens(b) for b in timed)

        def step(batch: list[int]) -> None:
            trainer.train_step([batch])

        split = op_time_summary(step, profiled, cuda=device.type == "cuda")
    peak = torch.cuda.max_memory_allocated()
    return {
        "timed_steps": len(timed),
        "ms_per_step": round(1000 * seconds / max(1, len(timed)), 2),
        "tgt_tok_s": round(tokens / max(seconds, 1e-9)),
        "tgt_tokens_per_update": round(tokens / max(1, len(timed))),
        "peak_cuda_mib": round(peak / MIB),
        "time_split": split,
    }


# --- 4. train ------------------------------------------------------------------------------
def train_recipe(plan: CheckPlan) -> dict[str, Any]:
    """The recipe for ``plan.minutes`` on the GPU; its speed, memory and validation BLEU."""
    out = Path(plan.run_dir)
    if out.exists() and any(out.iterdir()):
        raise NMTError(f"run folder {out} is not empty: pass --run-dir NEW_FOLDER")
    cfg = compose_recipe(plan.train_overrides())
    # What the profile phase left (its trainer, batches and profiler trace, possibly held in
    # reference cycles) is not this run's: free it, then give its cached blocks back.
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    best = train(cfg, out_dir=out)
    wall = time.perf_counter() - start
    return {
        **summarize_metrics(read_metrics(out / "metrics.jsonl")),
        "best_valid_bleu": round(best, 2),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / MIB),
        "peak_cuda_reserved_mib": round(torch.cuda.max_memory_reserved() / MIB),
        "wall_seconds": round(wall, 1),
        "run_dir": str(out),
    }


def summarize_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Speed and validation from a run's metrics.jsonl: the median target tokens/s of its
    logged intervals (the first, with the warm-up, left out when there are three or more),
    updates, epochs, validation BLEU per validation and the time spent validating."""
    rates = [r["tgt_tok_s"] for r in records if r.get("split") == "train"]
    steady = rates[1:] if len(rates) >= 3 else rates
    valid = [r for r in records if r.get("split") == "valid"]
    return {
        "tgt_tok_s": round(statistics.median(steady)) if steady else None,
        "intervals": len(steady),
        "steps": max((r.get("step", 0) for r in records), default=0),
        "epochs": max((r.get("epoch", 0) for r in records), default=0),
        "valid_bleu": [round(r["bleu"], 2) for r in valid if "bleu" in r],
        "valid_seconds": round(sum(r.get("valid_seconds", 0.0) for r in valid), 1),
    }


# --- 5. decode -----------------------------------------------------------------------------
def decode_test(plan: CheckPlan) -> dict[str, Any]:
    """Beam 5 over test_2016_flickr on the GPU with the trained ``best.pt``."""
    device = torch.device("cuda")
    model, src_tok, tgt_tok, cfg = load_for_inference(plan.run_dir, device)
    split = prepare(cfg).splits[TEST_SPLIT]
    sources, refs = list(split.src_text), list(split.tgt_text)
    dec = copy.deepcopy(decode_settings(cfg))
    dec.method, dec.beam_size, dec.n_best, dec.workers = "beam", 5, 1, 1
    dec.max_sentences, dec.max_tokens = plan.decode_batch, 10**9  # batches by sentence count
    translator = Translator(model, src_tok, tgt_tok, dec, device)
    with torch.inference_mode():
        translator.translate(sources[:32])  # warm-up: kernels, the search view
        torch.cuda.synchronize()
        start = time.perf_counter()
        results = translator.translate_nbest(sources)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    hyps = [r[0].text if r else "" for r in results]
    scores = score(hyps, [refs], metrics=("bleu", "chrf"))
    return {
        "split": TEST_SPLIT,
        "checkpoint": str(Path(plan.run_dir) / "best.pt"),
        "sentences": len(sources),
        "sent_s": round(len(sources) / seconds, 1),
        "out_tok_s": round(sum(len(r[0].tokens) for r in results if r) / seconds),
        "seconds": round(seconds, 2),
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
        "bleu_signature": scores["bleu_signature"],
    }


# --- the whole check -------------------------------------------------------------------------
PHASES: list[tuple[str, Callable[[CheckPlan], dict[str, Any]], str | None]] = [
    ("tests", run_cuda_tests, None),
    ("prepare", prepare_data, None),
    ("profile", profile_training, "prepare"),
    ("train", train_recipe, "prepare"),
    ("decode", decode_test, "train"),
]


def run_check(
    plan: CheckPlan,
    save: Callable[[dict[str, Any]], None],
    log: Callable[[str], None] = print,
    invoked: str = "nmt-gpu-check",
) -> dict[str, Any]:
    """Every phase in order; ``save(result)`` after each; ``invoked``: the command line, for
    the record. Needs a CUDA GPU."""
    if plan.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise NMTError(f"{torch.cuda.get_device_name(0)} has no bf16: use --precision fp16")
    started = time.time()
    result: dict[str, Any] = {
        "cuda": True,
        "complete": False,
        "environment": environment(),
        "plan": asdict(plan),
        "commands": {"gpu_check": invoked, **commands(plan)},
    }
    for name, phase, needs in PHASES:
        dep = result.get(needs, {}) if needs is not None else {}
        if name == "tests" and not plan.tests:
            result[name] = {"not_run": "--skip-tests"}
        elif "error" in dep or "not_run" in dep:  # nothing to build on
            why = "failed" if "error" in dep else "did not run"
            result[name] = {"not_run": f"the {needs} phase {why}"}
        else:
            log(f"nmt-gpu-check: {name} ...")
            try:
                result[name] = phase(plan)
            except Exception as err:  # noqa: BLE001 - one phase's failure must not lose the others
                result[name] = {"error": f"{type(err).__name__}: {first_line(err, 400)}"}
        save(result)
    ran = [result[name] for name, _, _ in PHASES if not (name == "tests" and not plan.tests)]
    result["ok"] = all("error" not in r and "not_run" not in r for r in ran) and (
        not plan.tests or result["tests"].get("returncode") == 0
    )
    result["complete"] = True
    result["wall_seconds"] = round(time.time() - started, 1)
    save(result)
    return result
