"""BLEU by source length for ``nmt-report --buckets``: each run's ``eval/<split>.src``,
``.hyp`` and ``.ref`` (what ``nmt-evaluate`` writes) cut into buckets of source words, the
classic picture of what a fixed-size sentence vector loses on long sentences."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmt.data.readers import read_text_lines
from nmt.errors import NMTError
from nmt.report import cells_row, number
from nmt.scoring import score

DEFAULT_EDGES = (10, 15, 20, 25)


def parse_edges(text: str) -> tuple[int, ...]:
    """``"10,15,20,25"`` -> (10, 15, 20, 25): the last length (in words) of each bucket."""
    try:
        edges = tuple(int(x) for x in text.split(","))
    except ValueError:
        edges = ()
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise NMTError(
            f"--bucket-edges {text!r} is not a list of increasing word counts: e.g. 10,15,20,25"
        )
    return edges


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """``(10, 15)`` -> ``["1-10", "11-15", "16+"]``."""
    lows = [1, *(e + 1 for e in edges)]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, edges)] + [f"{lows[-1]}+"]


def bucket_scores(run: Path, edges: Sequence[int]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {label: {"bleu": ..., "n": sentences}}}`` for every ``eval/<split>.hyp``
    with its ``.src`` and ``.ref`` ({} for a run without them)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    labels = bucket_labels(edges)
    for hyp_path in sorted((run / "eval").glob("*.hyp")):
        src_path, ref_path = hyp_path.with_suffix(".src"), hyp_path.with_suffix(".ref")
        if not (src_path.is_file() and ref_path.is_file()):
            continue
        src = read_text_lines(str(src_path), "source file")
        hyp = read_text_lines(str(hyp_path), "hypothesis file")
        ref = read_text_lines(str(ref_path), "reference file")
        if not len(src) == len(hyp) == len(ref):
            raise NMTError(
                f"{run}/eval/{hyp_path.stem}.src/.hyp/.ref hold {len(src)}/{len(hyp)}/{len(ref)} "
                f"lines, not one per sentence each: run nmt-evaluate {run} again"
            )
        groups: dict[str, list[int]] = {label: [] for label in labels}
        for i, line in enumerate(src):  # sum(): how many edges the length is past
            groups[labels[sum(len(line.split()) > e for e in edges)]].append(i)
        out[hyp_path.stem] = {
            label: {"bleu": _bleu([hyp[i] for i in idx], [ref[i] for i in idx]), "n": len(idx)}
            for label, idx in groups.items()
        }
    return out


def _bleu(hyps: list[str], refs: list[str]) -> float | None:
    """Corpus BLEU of some sentences (None for none); line counts were checked by ``score``."""
    return score(hyps, [refs], metrics=["bleu"])["bleu"] if hyps else None


def buckets_table(rows: list[dict[str, Any]], edges: Sequence[int]) -> str:
    """BLEU per source-length bucket (sentences in parentheses), one line per run and split."""
    labels = bucket_labels(edges)
    lines = [
        cells_row(["run", "split", *(f"{x} words" for x in labels)]),
        cells_row(["---", "---", *["---:"] * len(labels)]),
    ]
    for r in rows:
        for split, buckets in r.get("buckets", {}).items():
            cells = [f"{number(buckets[x]['bleu'], '{:.2f}')} ({buckets[x]['n']})" for x in labels]
            lines.append(cells_row([r["run"], split, *cells]))
    missing = [r["run"] for r in rows if not r.get("buckets")]
    note = (
        f"\nNo eval/<split>.src/.hyp/.ref (nmt-evaluate): {', '.join(missing)}\n" if missing else ""
    )
    return "\n".join(lines) + "\n" + note
