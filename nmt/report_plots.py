"""The learning curves of ``nmt-report --plot``: one PNG with the validation metric against
wall time and against updates, and, when the runs logged it, the mean gradient norm of the
training updates (before clipping) against updates: the curve that shows a plain RNN's
gradients vanishing or exploding next to a GRU's or LSTM's.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from nmt.outputs import replacing
from nmt.report import LABELS, Run, with_elapsed


def plot_curves(
    runs: list[Run], rows: list[dict[str, Any]], path: Path, title: str | None = None
) -> None:
    """One PNG, a line per run (labelled with its name and differing settings, in the
    table's order): validation metric by wall time and by updates, and the training
    gradient norm by updates (a log scale) when any run has it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metric = rows[0]["metric"]
    by_name = {run.name: run for run in runs}
    with_norms = any("grad_norm" in r for run in runs for r in run.records)
    panels = 3 if with_norms else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    by_time, by_step = axes[0], axes[1]
    if title:
        fig.suptitle(title)
    columns = 1 if len(rows) <= 4 else 2
    longest = max((r["wall_s"] or 0 for r in rows), default=0)
    unit, per = (
        ("seconds", 1) if longest < 120 else ("minutes", 60) if longest < 7200 else ("hours", 3600)
    )
    for i, row in enumerate(rows):
        records = by_name[row["run"]].records
        points = [
            (e, r) for e, r in with_elapsed(records) if r.get("split") == "valid" and metric in r
        ]
        settings = " ".join(f"{k}={v}" for k, v in row["settings"].items())
        label = textwrap.fill(f"{row['run']} {settings}", 150 // columns, subsequent_indent="  ")
        style = {"marker": "o", "ms": 3, "ls": ("-", "--", ":", "-.")[i // 10 % 4]}
        steps, values = [r["step"] for _, r in points], [r[metric] for _, r in points]
        line = by_step.plot(steps, values, label=label, **style)[0]
        timed = [(e / per, r[metric]) for e, r in points if e is not None]
        if timed:
            by_time.plot(*zip(*timed), color=line.get_color(), **style)
        norms = [(r["step"], r["grad_norm"]) for r in records if "grad_norm" in r]
        if with_norms and norms:
            axes[2].plot(*zip(*norms), color=line.get_color(), ls=style["ls"])
    by_time.set_xlabel(f"wall time ({unit})")
    by_step.set_xlabel("updates")
    for ax in (by_time, by_step):
        ax.set_ylabel(f"validation {LABELS[metric]}")
        ax.grid(alpha=0.3)
    if with_norms:
        axes[2].set(xlabel="updates", ylabel="gradient norm before clipping", yscale="log")
        axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=columns, fontsize="small")
    with replacing(path) as f:  # the legend sits below the axes: "tight" keeps it
        fig.savefig(f, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
