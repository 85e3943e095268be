"""Comparing training runs (``nmt-report``): run folders -> rows -> a Markdown table and the
learning curves (:mod:`nmt.report_plots`; BLEU by source length: :mod:`nmt.report_lengths`).

A run folder is what ``nmt-train`` writes: ``metrics.jsonl`` (required), ``.hydra/`` (config,
overrides, group choices), ``best.pt``/``last.pt`` and, after ``nmt-evaluate``, ``eval/``.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nmt.config import upgrade_plain
from nmt.errors import NMTError
from nmt.train.checkpoint import BEST, LAST, load_checkpoint
from nmt.train.metrics import METRICS_NAME, format_seconds, read_metrics

# Validation metrics a report can rank by: True when higher is better.
METRICS = {"bleu": True, "chrf": True, "loss": False, "ppl": False}
LABELS = {"bleu": "BLEU", "chrf": "chrF", "loss": "loss", "ppl": "ppl"}
NUMERIC = ("params", "updates", "wall_s", "tok_s")  # sortable columns besides run and scores
DESCENDING = {"tok_s"}  # numeric columns whose best is the largest
UNSET = "(unset)"


@dataclass
class Run:
    """What a report reads of one run folder."""

    path: Path
    name: str
    records: list[dict[str, Any]]
    config: dict[str, Any]  # the resolved config, flattened: ``{"a.b.c": value}``
    overrides: dict[str, str]  # the command line's, ``{key: value}``
    choices: dict[str, str]  # Hydra's group choices, ``{"model": "gru"}``

    @property
    def char_lm(self) -> bool:
        return self.config.get("model.arch") == "char_lm"


# --- finding and reading runs -------------------------------------------------------------


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders among ``paths``: a run folder itself, or every subfolder that is one
    (a Hydra multirun folder, a study's parent folder), in natural order."""
    found: list[Path] = []
    for given in map(Path, paths):
        if not given.is_dir():
            raise NMTError(f"{given} does not exist or is not a folder: pass nmt-train run folders")
        if (given / METRICS_NAME).is_file():
            found.append(given)
            continue
        subs = [p for p in given.iterdir() if (p / METRICS_NAME).is_file()]
        if not subs:
            raise NMTError(
                f"{given} has no {METRICS_NAME} (nor has any of its subfolders): is it a run "
                "folder of nmt-train?"
            )
        found += sorted(
            subs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
        )
    return list(dict.fromkeys(p.resolve() for p in found))


def read_run(path: Path, name: str) -> Run:
    """One run folder's metrics, config, overrides and group choices."""
    records = [r for r in read_metrics(path / METRICS_NAME) if isinstance(r, dict)]
    if not records:
        raise NMTError(
            f"{path / METRICS_NAME} holds no records: the run has not logged anything yet"
        )
    hydra = path / ".hydra"
    config = _yaml(hydra / "config.yaml")
    overrides = _yaml(hydra / "overrides.yaml") or []
    runtime = (_yaml(hydra / "hydra.yaml") or {}).get("hydra", {}).get("runtime", {})
    pairs = [str(o).lstrip("+~").split("=", 1) for o in overrides]
    return Run(
        path=path,
        name=name,
        records=records,
        config=_flatten(upgrade_plain(config)) if isinstance(config, dict) else {},
        overrides={p[0]: p[1] for p in pairs if len(p) == 2 and not p[0].startswith("hydra.")},
        choices={k: str(v) for k, v in (runtime.get("choices") or {}).items()},
    )


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run found under ``paths``, named by its folder (by its path below the folders'
    common parent when two folders share a name)."""
    folders = find_runs(paths)
    names = [p.name for p in folders]
    if len(set(names)) < len(names):
        common = os.path.commonpath([p.parent for p in folders])
        names = [str(p.relative_to(common)) for p in folders]
    return [read_run(p, n) for p, n in zip(folders, names)]


def _yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # OmegaConf wraps YAML errors in several types
        raise NMTError(f"{path} is not readable YAML: check the file") from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- the settings that differ ---------------------------------------------------------------


def format_value(value: Any) -> str:
    """A config value as typed on a command line: ``null``, ``true``, ``[a,b]``, ``0.001``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def _setting(run: Run, key: str) -> str:
    """A run's value of ``key``: the resolved config's when it is a config key, else the
    group option it chose (command line, then Hydra's record)."""
    if key in run.config:
        return format_value(run.config[key])
    return run.overrides.get(key) or run.choices.get(key) or UNSET


def differing_settings(runs: list[Run]) -> list[dict[str, str]]:
    """Per run, ``{key: value}`` of the overrides and config keys whose values differ between
    the runs (config keys under a differing group override, e.g. ``embeddings.*`` under
    ``embeddings=...``, are left to it)."""
    if len(runs) < 2:
        return [{} for _ in runs]
    over = list(dict.fromkeys(k for r in runs for k in r.overrides))
    keys = [k for k in over if len({_setting(r, k) for r in runs}) > 1]
    for key in dict.fromkeys(k for r in runs for k in r.config):
        covered = any(key == k or key.startswith(k + ".") for k in keys)
        if not covered and len({_setting(r, key) for r in runs}) > 1:
            keys.append(key)
    return [{k: _setting(r, k) for k in keys} for r in runs]


# --- rows -----------------------------------------------------------------------------------


def with_elapsed(records: list[dict[str, Any]]) -> list[tuple[float | None, dict[str, Any]]]:
    """Each record with its wall time since the start of training: its ``elapsed``, or for a
    validation record (which has none) the nearest earlier train record's ``elapsed`` plus
    the clock time between them (the nearest later one's minus it when none is earlier)."""
    anchors = [(r["time"], r["elapsed"]) for r in records if "elapsed" in r and "time" in r]
    out: list[tuple[float | None, dict[str, Any]]] = []
    for r in records:
        if "elapsed" in r or "time" not in r or not anchors:
            out.append((r.get("elapsed"), r))
            continue
        before = [a for a in anchors if a[0] <= r["time"]]
        t, e = before[-1] if before else anchors[0]
        out.append((max(0.0, e + r["time"] - t), r))
    return out


def count_params(run: Path) -> int | None:
    """Parameters of the run's model (``best.pt``, else ``last.pt``), tied tables once."""
    path = next((run / n for n in (BEST, LAST) if (run / n).is_file()), None)
    if path is None:
        return None
    seen, total = set(), 0
    for tensor in load_checkpoint(path)["model"].values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def default_metric(runs: list[Run]) -> str:
    """``bleu`` for translation runs, ``loss`` (nats/char) for char-LM runs."""
    kinds = {r.char_lm for r in runs}
    if len(kinds) > 1:
        raise NMTError(
            "the runs mix translation and char-LM runs: pass --metric loss (or ppl), which both have"
        )
    return "loss" if kinds == {True} else "bleu"


def best_record(run: Run, metric: str) -> dict[str, Any] | None:
    """The validation record with the best finite ``metric`` (the earliest of equals), or
    None before the first validation."""
    valid = [r for r in run.records if r.get("split") == "valid"]
    if valid and not any(metric in r for r in valid):
        has = ", ".join(k for k in METRICS if any(k in r for r in valid))
        raise NMTError(
            f"{run.path} has no validation {metric}"
            f"{' (a char-LM run)' if run.char_lm else ''}: use --metric {has or 'loss'}"
        )
    scored = [r for r in valid if isinstance(r.get(metric), int | float)]
    scored = [r for r in scored if math.isfinite(r[metric])]  # a diverged run's NaN
    if not scored:
        return None
    sign = -1 if METRICS[metric] else 1
    return min(scored, key=lambda r: sign * r[metric])


def run_row(run: Run, metric: str, settings: dict[str, str]) -> dict[str, Any]:
    """One row (plain data, JSON-ready) of the report."""
    times = [e for e, _ in with_elapsed(run.records) if e is not None]
    speeds = [r["tgt_tok_s"] for r in run.records if r.get("split") == "train" and "tgt_tok_s" in r]
    best = best_record(run, metric)
    row: dict[str, Any] = {
        "run": run.name,
        "path": str(run.path),
        "settings": settings,
        "params": count_params(run.path),
        "updates": max(int(r.get("step", 0)) for r in run.records),
        "wall_s": round(times[-1], 1) if times else None,
        "tok_s": round(statistics.median(speeds), 1) if speeds else None,
        "metric": metric,
        "best": best[metric] if best else None,
        "best_step": best["step"] if best else None,
        "test": eval_scores(run.path),
    }
    if run.char_lm:
        row["bits_per_char"] = best["loss"] / math.log(2) if best and "loss" in best else None
    return row


def eval_scores(run: Path) -> dict[str, dict[str, float]]:
    """``{split: {"bleu": ..., "chrf": ...}}`` from ``eval/results.json`` ({} without it, or
    when it holds the scores of a quantized model or an ensemble)."""
    path = run / "eval" / "results.json"
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        splits = results.get("splits", {})
    except (OSError, ValueError, AttributeError):
        raise NMTError(f"{path} is not readable JSON: run nmt-evaluate {run} again") from None
    # int8 or ensemble scores (nmt-evaluate --out RUN/eval) are not the run's own
    if results.get("quantize") or results.get("ensemble"):
        return {}
    return {
        s: {m: v[m] for m in ("bleu", "chrf") if m in v}
        for s, v in splits.items()
        if isinstance(v, dict)
    }


def build_rows(runs: list[Run], metric: str) -> list[dict[str, Any]]:
    """The report's rows, in the order of ``runs``."""
    return [run_row(r, metric, s) for r, s in zip(runs, differing_settings(runs))]


def sort_rows(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """Rows by ``column``, best first (the metric and test scores by their direction, speed
    fastest first, settings and names alphabetically, other numbers smallest first); rows
    without a value last."""
    metric = rows[0]["metric"] if rows else "bleu"
    get, descending = _column(rows, column, metric)
    present = [r for r in rows if get(r) is not None]
    absent = [r for r in rows if get(r) is None]
    return sorted(present, key=get, reverse=descending) + absent


def _column(rows: list[dict[str, Any]], column: str, metric: str) -> tuple[Any, bool]:
    splits = sorted({s for r in rows for s in r["test"]})
    settings = sorted({k for r in rows for k in r["settings"]})
    if column in ("best", metric):
        return (lambda r: r["best"]), METRICS[metric]
    if column == "run":
        return (lambda r: r["run"]), False
    if column in NUMERIC:
        return (lambda r: r[column]), column in DESCENDING
    split, _, score_name = column.partition(".")
    if split in splits and score_name in ("", "bleu", "chrf"):
        name = score_name or "bleu"
        return (lambda r: r["test"].get(split, {}).get(name)), True
    if column in settings:
        return (lambda r: _natural(r["settings"].get(column, ""))), False
    choices = ["best", "run", *NUMERIC, *(f"{s}.bleu" for s in splits), *settings]
    raise NMTError(f"--sort {column} is not a column: use one of {', '.join(choices)}")


def _natural(text: str) -> tuple[Any, ...]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


# --- the table ------------------------------------------------------------------------------


def markdown_table(rows: list[dict[str, Any]], title: str | None = None) -> str:
    """The rows as a Markdown table (``–`` where a run has no value)."""
    metric = rows[0]["metric"]
    splits = list(dict.fromkeys(s for r in rows for s in r["test"]))
    with_settings = any(r["settings"] for r in rows)
    with_bits = any("bits_per_char" in r for r in rows)
    head = ["run", *(["settings"] if with_settings else []), "params", "updates", "wall"]
    head += ["tok/s", f"best val {LABELS[metric]} (step)", *(["bits/char"] if with_bits else [])]
    head += [f"{s} {LABELS[m]}" for s in splits for m in ("bleu", "chrf")]
    lines = [
        cells_row(head),
        cells_row(["---" if h in ("run", "settings") else "---:" for h in head]),
    ]
    decimals = 2 if METRICS[metric] else 4
    for r in rows:
        cells = [r["run"]]
        if with_settings:
            cells.append(" ".join(f"{k}={v}" for k, v in r["settings"].items()))
        cells += [number(r["params"], "{:,}"), number(r["updates"], "{:,}")]
        cells += [format_seconds(r["wall_s"]) if r["wall_s"] is not None else "–"]
        cells += [number(r["tok_s"], "{:,.0f}")]
        best = number(r["best"], f"{{:.{decimals}f}}")
        cells.append(f"{best} ({r['best_step']})" if r["best"] is not None else best)
        if with_bits:
            cells.append(number(r.get("bits_per_char"), "{:.4f}"))
        cells += [
            number(r["test"].get(s, {}).get(m), "{:.2f}") for s in splits for m in ("bleu", "chrf")
        ]
        lines.append(cells_row(cells))
    heading = f"## {title}\n\n" if title else ""
    return heading + "\n".join(lines) + "\n"


def number(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def cells_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
