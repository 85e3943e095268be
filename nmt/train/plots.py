"""``curves.png``: training/validation loss and the validation metric against the step."""

from __future__ import annotations

from pathlib import Path

from nmt.outputs import replacing
from nmt.train.metrics import read_metrics


def plot_curves(metrics_path: Path, out_png: Path) -> Path | None:
    """Draw the curves from ``metrics.jsonl``; returns the image path (None if no data)."""
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    valid = [r for r in records if r.get("split") == "valid"]
    if not train and not valid:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    metric = next((k for k in ("bleu", "bits_per_char") if any(k in r for r in valid)), None)
    ncols = 2 if metric else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0][0]
    if train:
        # The plain NLL (not the label-smoothed objective), comparable with the val curve.
        ys = [r.get("nll", r["loss"]) for r in train]
        ax.plot([r["step"] for r in train], ys, label="train loss (nll)")
    if valid:
        vs = [r for r in valid if "loss" in r]
        ax.plot([r["step"] for r in vs], [r["loss"] for r in vs], "o-", label="val loss (nll)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if metric:
        ax = axes[0][1]
        vs = [r for r in valid if metric in r]
        ax.plot([r["step"] for r in vs], [r[metric] for r in vs], "o-", color="tab:green")
        ax.set_xlabel("step")
        ax.set_ylabel(f"val {metric.replace('_', ' ')}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with replacing(out_png) as f:  # a resumed run redraws it: never a half-written PNG
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return Path(out_png)
