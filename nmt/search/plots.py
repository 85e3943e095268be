"""Attention heatmaps (source pieces x target pieces) as PNG files, with matplotlib's Agg."""

from __future__ import annotations

from pathlib import Path

from nmt.outputs import replacing


def plot_attention_maps(translator, lines: list[str], results, out_dir: Path, count: int) -> int:
    """Plot the best translation's attention of the first ``count`` non-empty lines.

    Files are ``out_dir/attention_<line number>.png``. Returns how many were written (0 when
    the model has no attention).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, (line, nbest) in enumerate(zip(lines, results)):
        if written >= count:
            break
        if not nbest or nbest[0].attention is None:
            continue
        best = nbest[0]
        src = translator.source_pieces(line)
        tgt = [translator.tgt_tok.id_to_piece(t) for t in best.tokens] + ["</s>"]
        attn = best.attention[: len(tgt), : len(src)].float().numpy()
        fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(src) + 2), max(3, 0.35 * len(tgt) + 1.5)))
        ax.imshow(attn, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(src)), src, rotation=90, fontsize=8)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        ax.set_title(f"line {i + 1}", fontsize=9)
        fig.tight_layout()
        with replacing(out_dir / f"attention_{i + 1}.png") as f:  # never a half-written PNG
            fig.savefig(f, dpi=100, format="png")
        plt.close(fig)
        written += 1
    return written
