"""``nmt-score -r REF [-r REF2 ...] [HYP]``: sacreBLEU BLEU, chrF and TER with signatures.

The hypotheses come from HYP or stdin (one detokenized line per sentence).
``--moses-lowercase`` adds the lowercased, Moses-tokenized BLEU (``--lang``, default fr)
that Multi30k papers report; ``--json`` prints one JSON object instead of text.
"""

from __future__ import annotations

import argparse
import json

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.data.readers import read_text_lines
from nmt.scoring import METRICS, format_scores, score


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-score",
        "sacreBLEU BLEU, chrF and TER of detokenized hypotheses, with their signatures.",
        [
            "nmt-score -r test.fr test.hyp.fr",
            "nmt-translate runs/x -i test.en | nmt-score -r test.fr --json",
            "nmt-score -r ref1.fr -r ref2.fr hyp.fr --moses-lowercase    # + Multi30k papers' BLEU",
        ],
    )
    p.add_argument("hyp", nargs="?", help="hypothesis file (default: stdin)")
    p.add_argument(
        "-r", "--ref", action="append", required=True, help="reference file (repeatable)"
    )
    p.add_argument("-m", "--metrics", nargs="+", default=list(METRICS), choices=METRICS)
    p.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU")
    p.add_argument("--tokenize", default=None, help="sacreBLEU BLEU tokenizer (default 13a)")
    p.add_argument(
        "--moses-lowercase",
        action="store_true",
        help="also report BLEU on lowercased, Moses-tokenized text (Multi30k papers' number)",
    )
    p.add_argument("--lang", default="fr", help="Moses tokenizer language (default: fr)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    refs = [read_text_lines(r, "reference file") for r in args.ref]
    hyps = read_text_lines(args.hyp, "hypothesis file")
    scores = score(
        hyps,
        refs,
        lowercase=args.lowercase,
        tokenize=args.tokenize,
        metrics=args.metrics,
        moses_lc_tok=args.moses_lowercase,
        lang=args.lang,
        hyp_name=args.hyp or "stdin",
        ref_names=args.ref,
    )
    print(json.dumps(scores, indent=1) if args.json else format_scores(scores))
    return scores


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
