"""How good are ``nmt-translate --alignments``? Agreement with a statistical word aligner.

    pip install -e '.[align]'   # eflomal, the statistical aligner (GPL-3; this bench's tool, not nmt's)
    NMT_DATA_MIRROR=/work/shared/data OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python \\
        bench/alignment_quality.py runs/ablations/gru-s1 runs/ablations/attn_luong_general-s1 \\
        --limit 1000

Reference. No human-annotated English-French alignment set ships on the package registries
this project can reach (the Och & Ney / Mihalcea & Pedersen Hansards gold set is only on the
web), so AER against a gold standard cannot be measured here. Instead each model translates
the first ``--limit`` sentences of Multi30k test2016 (English -> French, the checkpoint's own
decoding settings), and its attention alignments (:mod:`nmt.search.alignment`) between the
source words and the words of *its own output* are compared with eflomal's alignments of the
same sentence pairs: eflomal (Bayesian IBM-style HMM with fertility, Östling & Tiedemann
2016) is trained on the 29,000 Multi30k training pairs plus those test pairs, lowercased,
on the same space-separated words. Reported, summed over all sentences:

* precision / recall / F1 of our links against eflomal's forward links (each target word
  aligned to at most one source word, the same shape as our argmax rule), its intersection
  with the reverse direction (high precision) and their union (high recall);
* an AER computed as if eflomal were gold: sure links = intersection, possible = union,
  ``AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)`` (Och & Ney 2003). This is agreement with
  a statistical aligner, not an error rate against people;
* baselines on the same pairs: ``diagonal`` links target word j to the source word at the
  same relative position, and eflomal's reverse direction against its forward one (how much
  two statistical alignments of the same data agree).

Prints a Markdown table (docs/translating.md holds the measured one).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from nmt.data.cleaning import clean_text
from nmt.inference import load_for_inference
from nmt.search.alignment import parse_pharaoh, surface_pieces, word_alignment, words_of
from nmt.search.translator import Translator

Links = set[tuple[int, int]]
THRESHOLDS = (0.2, 0.3, 0.5)


def read_gz(path: Path, limit: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit else lines


def words(text: str) -> list[str]:
    """Space-separated words, as nmt.search.alignment counts them (other whitespace inside a
    word, e.g. U+00A0, becomes ``_`` so that eflomal's split sees the same words)."""
    return ["".join("_" if c.isspace() else c for c in w) for w in text.split(" ") if w]


def attention_links(run: str, sources: list[str]) -> tuple[list[str], dict[str, list[Links]]]:
    """The best translation of each source and its links per rule (argmax, thresholds)."""
    model, src_tok, tgt_tok, cfg = load_for_inference(run)
    decode = OmegaConf.to_object(cfg.decode)
    translator = Translator(model, src_tok, tgt_tok, dataclasses.replace(decode, n_best=1))
    start = time.perf_counter()
    with torch.inference_mode():
        results = translator.translate_nbest(sources, return_attention=True)
    print(
        f"{run}: translated {len(sources)} lines in {time.perf_counter() - start:.0f}s",
        file=sys.stderr,
    )
    hyps, rules = [], {"argmax": [], **{f"share>={t}": [] for t in THRESHOLDS}}
    for line, (best,) in zip(sources, results):
        source = surface_pieces(src_tok, line)[: translator.max_src_len]
        target = [tgt_tok.id_to_piece(t) for t in best.tokens]
        # The words the links count are the words of the input line and of the output line.
        assert words_of(source) == words(clean_text(line)) and words_of(target) == words(best.text)
        hyps.append(best.text)
        rules["argmax"].append(set(word_alignment(source, target, best.attention)))
        for t in THRESHOLDS:
            rules[f"share>={t}"].append(set(word_alignment(source, target, best.attention, t)))
    return hyps, rules


def eflomal_links(
    train: tuple[list[str], list[str]], sources: list[str], targets: list[str]
) -> tuple[list[Links], list[Links]]:
    """eflomal's forward and reverse links of the (source, target) pairs, trained on them
    together with the training pairs."""
    from eflomal import Aligner

    src = [" ".join(words(s)) for s in train[0] + sources]
    tgt = [" ".join(words(t)) for t in train[1] + targets]
    with tempfile.TemporaryDirectory() as tmp:
        fwd, rev = os.path.join(tmp, "fwd"), os.path.join(tmp, "rev")
        Aligner().align(src, tgt, links_filename_fwd=fwd, links_filename_rev=rev)
        read = [Path(p).read_text(encoding="utf-8").split("\n")[: len(src)] for p in (fwd, rev)]
    n = len(sources)
    return [parse_pharaoh(x) for x in read[0][-n:]], [parse_pharaoh(x) for x in read[1][-n:]]


def diagonal(sources: list[str], targets: list[str]) -> list[Links]:
    """Target word j to the source word at the same relative position."""
    out = []
    for s, t in zip(sources, targets):
        n_s, n_t = len(words(clean_text(s))), len(words(t))
        out.append({(min(n_s - 1, int((j + 0.5) * n_s / n_t)), j) for j in range(n_t)})
    return out


def scores(ours: list[Links], ref: list[Links]) -> tuple[float, float, float]:
    hit = sum(len(a & r) for a, r in zip(ours, ref))
    n_ours, n_ref = sum(map(len, ours)), sum(map(len, ref))
    p, r = hit / max(n_ours, 1), hit / max(n_ref, 1)
    return p, r, 2 * p * r / max(p + r, 1e-12)


def aer(ours: list[Links], sure: list[Links], possible: list[Links]) -> float:
    a_s = sum(len(a & s) for a, s in zip(ours, sure))
    a_p = sum(len(a & (p | s)) for a, s, p in zip(ours, sure, possible))
    return 1 - (a_s + a_p) / max(sum(map(len, ours)) + sum(map(len, sure)), 1)


def table_rows(
    name: str, rules: dict[str, list[Links]], fwd: list[Links], rev: list[Links]
) -> list[str]:
    inter = [f & r for f, r in zip(fwd, rev)]
    union = [f | r for f, r in zip(fwd, rev)]
    rows = []
    for rule, links in rules.items():
        cells = [f"{100 * x:.1f}" for ref in (fwd, inter, union) for x in scores(links, ref)]
        cells.append(f"{100 * aer(links, inter, union):.1f}")
        if links is rev:  # the reverse links make the intersection and union themselves
            cells[3:] = ["–"] * 7
        rows.append(f"| {name} | {rule} | {' | '.join(cells)} |")
    return rows


def require_eflomal() -> None:
    """Stop before any model is loaded when the aligner is missing (it runs last)."""
    if importlib.util.find_spec("eflomal") is None:
        sys.exit(
            "alignment_quality.py needs eflomal, which nmt does not install: "
            "pip install -e '.[align]'"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders or checkpoints (models with attention)")
    p.add_argument("--limit", type=int, default=1000, help="test2016 sentences (default 1000)")
    p.add_argument("--mirror", default=os.environ.get("NMT_DATA_MIRROR", "../shared/data"))
    args = p.parse_args()
    require_eflomal()
    torch.set_num_threads(1)
    m30k = Path(args.mirror) / "multi30k"
    sources = read_gz(m30k / "test_2016_flickr.en.gz", args.limit)
    train = (read_gz(m30k / "train.en.gz"), read_gz(m30k / "train.fr.gz"))
    header = (
        "| model | rule | P fwd | R fwd | F1 fwd | P ∩ | R ∩ | F1 ∩ | P ∪ | R ∪ | F1 ∪ | AER (S=∩, P=∪) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for run in args.runs:
        hyps, rules = attention_links(run, sources)
        start = time.perf_counter()
        fwd, rev = eflomal_links(train, sources, hyps)
        print(f"eflomal: {time.perf_counter() - start:.0f}s", file=sys.stderr)
        rules["diagonal (baseline)"] = diagonal(sources, hyps)
        rules["eflomal reverse (baseline)"] = rev
        rows += table_rows(Path(run).name, rules, fwd, rev)
        print("\n".join([header, *rows]), flush=True)  # so far, in case a later run fails


if __name__ == "__main__":
    main()
