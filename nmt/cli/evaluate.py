"""``nmt-evaluate``: translate a run's test sets with beam search and score them.

    nmt-evaluate runs/quickstart                       # every data.test_splits of the run
    nmt-evaluate runs/x --splits test_2016_flickr --beam 12 --length-penalty 1.0
    nmt-evaluate runs/x --greedy --examples 3 --json
    nmt-evaluate runs/x --quantize int8                # int8 on the CPU, into runs/x/eval_int8
    nmt-evaluate runs/x --shortlist 50                 # lexical shortlist, into runs/x/eval_shortlist50
    nmt-evaluate runs/x --ensemble runs/y/best.pt      # a 2-model ensemble, into runs/x/eval_ensemble

The test sets come from the run's own data config (the prepared cache, or a fresh
prepare from the mirror/download), their raw text is translated by the same
:class:`~nmt.search.translator.Translator` as ``nmt-translate``, and scored by
:func:`nmt.scoring.score`: cased detokenized sacreBLEU and chrF (what to report) plus
lowercased Moses-tokenized BLEU (``--no-lc-tok`` to skip), the variant the Multi30k
literature publishes. Writes ``RUN/eval/<split>.{src,ref,hyp}`` and
``RUN/eval/results.json`` (``RUN/eval_int8`` with ``--quantize int8``: ``nmt-report`` and
``nmt-serve``'s ``/models`` show ``RUN/eval`` as the run's scores); returns the first
split's BLEU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.cli.decode_flags import add_quantize_flag, add_shortlist_flags
from nmt.config_checks import check_decode_config
from nmt.config_choices import Device
from nmt.data.prepare import prepare
from nmt.devices import resolve_device
from nmt.errors import NMTError
from nmt.inference import load_lexical_table, load_translation_model, resolve_checkpoint
from nmt.outputs import check_output_folder, write_text
from nmt.quantize_scheme import quantize_device
from nmt.scoring import format_scores, score
from nmt.search.translator import Translator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-evaluate",
        "Translate a run's test sets with beam search and score them (sacreBLEU BLEU, chrF).",
        [
            "nmt-evaluate runs/quickstart                 # every data.test_splits of the run",
            "nmt-evaluate runs/x --splits test_2016_flickr --beam 12 --length-penalty 1.0",
            "nmt-evaluate runs/x --greedy --examples 3 --json",
            "nmt-evaluate runs/x --quantize int8         # int8 on the CPU: writes runs/x/eval_int8",
            "nmt-evaluate runs/x --shortlist 50          # writes runs/x/eval_shortlist50",
            "nmt-evaluate runs/x --ensemble runs/y/best.pt  # ensemble: writes runs/x/eval_ensemble",
        ],
    )
    p.add_argument("run", help="a run folder (best.pt, else last.pt) or a .pt file")
    p.add_argument("--splits", nargs="+", help="test splits (default: the run's data.test_splits)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--beam", type=int, help="beam size (default: the run's decode config)")
    mode.add_argument("--greedy", action="store_true", help="greedy search")
    p.add_argument("--length-penalty", type=float, help="GNMT alpha (0 = raw log-probability)")
    p.add_argument("--examples", type=int, default=0, help="print N example translations")
    p.add_argument(
        "--out",
        help="folder for hypotheses and results.json (default: RUN/eval; with --quantize int8, "
        "RUN/eval_int8, so the fp32 scores that nmt-report and nmt-serve show stay fp32)",
    )
    p.add_argument("--no-lc-tok", action="store_true", help="skip lowercased Moses-tok BLEU")
    p.add_argument(
        "--ensemble",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="more checkpoints (same vocabularies) whose log-probabilities are averaged with "
        "the run's; the scores go to RUN/eval_ensemble unless --out says otherwise",
    )
    p.add_argument("--device", default="auto", choices=Device.values())
    add_quantize_flag(p)
    add_shortlist_flags(p)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict:
    """Translate and score every split; returns ``{split: scores}``."""
    device = resolve_device(quantize_device(args.quantize, args.device), "--device")
    ckpt = resolve_checkpoint(args.run)
    # int8 and ensemble scores get folders of their own: RUN/eval is what nmt-report and
    # nmt-serve show as the run's (single fp32 model's) scores.
    tags = ["ensemble"] * bool(args.ensemble) + [args.quantize] * bool(args.quantize)
    tags += [f"shortlist{args.shortlist}"] * bool(args.shortlist)  # and shortlist scores
    default = "_".join(["eval", *tags])
    out_dir = Path(args.out) if args.out else (ckpt.parent / default)
    check_output_folder(out_dir, "--out" if args.out else "evaluation folder")
    model, src_tok, tgt_tok, decode, cfg = load_translation_model(
        ckpt, args.ensemble, device, args.quantize
    )
    if args.greedy:
        decode = replace(decode, method="greedy", beam_size=1)
    elif args.beam is not None:
        if args.beam < 1:
            raise NMTError(f"--beam must be at least 1, got {args.beam}")
        decode = replace(decode, method="beam", beam_size=args.beam)
    if args.length_penalty is not None:
        decode = replace(decode, length_penalty=args.length_penalty)
    if args.shortlist is not None:
        decode = replace(decode, shortlist=args.shortlist)
    if args.shortlist_frequent is not None:
        decode = replace(decode, shortlist_frequent=args.shortlist_frequent)
    check_decode_config(decode)
    lexical = load_lexical_table(ckpt, cfg, src_tok, tgt_tok) if decode.shortlist else None

    splits = args.splits or list(cfg.data.test_splits)
    if not splits:
        raise NMTError(f"{ckpt}: its data config lists no test_splits; pass --splits")
    data = prepare(cfg)
    unknown = [s for s in splits if s not in data.splits]
    if unknown:
        raise NMTError(
            f"split {unknown[0]!r} is not in data {cfg.data.name} "
            f"(it has: {', '.join(data.splits)})"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    translator = Translator(model, src_tok, tgt_tok, decode, device, lexical=lexical)

    results: dict = {}
    for name in splits:
        split = data.splits[name]
        sources, refs = list(split.src_text), list(split.tgt_text)
        start = time.perf_counter()
        with torch.inference_mode():
            hyps = translator.translate(sources)
        seconds = time.perf_counter() - start
        scores = score(
            hyps,
            [refs],
            metrics=("bleu", "chrf"),
            moses_lc_tok=not args.no_lc_tok,
            lang=cfg.data.tgt_lang,
        )
        scores.update(seconds=round(seconds, 2), sentences_per_second=round(len(hyps) / seconds, 1))
        if decode.shortlist:
            sizes = translator.shortlist().sizes([src_tok.encode(s) for s in sources])
            scores["shortlist_mean_candidates"] = round(sum(sizes) / max(1, len(sizes)), 1)
        for ext, lines in (("src", sources), ("ref", refs), ("hyp", hyps)):
            write_text(out_dir / f"{name}.{ext}", "".join(x + "\n" for x in lines))
        results[name] = scores
        if not args.json:
            print(
                f"== {name} ({len(hyps)} sentences, {seconds:.1f} s, "
                f"{scores['sentences_per_second']} sent/s)"
            )
            print(format_scores(scores))
            for i in range(min(args.examples, len(hyps))):
                print(f"  src: {sources[i]}\n  ref: {refs[i]}\n  hyp: {hyps[i]}\n")
    summary = {
        "checkpoint": str(ckpt),
        "quantize": args.quantize,
        "ensemble": list(args.ensemble),
        "decode": asdict(decode),
        "splits": results,
    }
    write_text(out_dir / "results.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"hypotheses and results.json in {out_dir}")
    return results


def main(argv: list[str] | None = None) -> None:
    run_guarded(evaluate, parse_args(argv))


if __name__ == "__main__":
    main()
