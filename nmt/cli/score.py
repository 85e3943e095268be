"""``nmt-score -r REF [-r REF2 ...] [HYP]``: sacreBLEU BLEU, chrF and TER with signatures.

The hypotheses come from HYP or stdin (one detokenized line per sentence).
``--moses-lowercase`` adds the lowercased, Moses-tokenized BLEU (``--lang``, default fr)
that Multi30k papers report; ``--json`` prints one JSON object instead of text.
"""

from __future__ import annotations

import argparse
import json

from nmt.cli import make_parser
from nmt.data.readers import read_text_lines
from nmt.errors import DataError
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


def check_line_counts(hyps: list[str], refs: list[list[str]], args: argparse.Namespace) -> None:
    """Refuse empty input and references of another length, naming the files.

    Raises:
        DataError: nothing to score, or a reference file's line count differs from the
            hypotheses'.
    """
    hyp_name = args.hyp or "stdin"
    if not hyps and not any(refs):
        ref_names = f"reference file{'s' if len(args.ref) > 1 else ''} {', '.join(args.ref)}"
        raise DataError(
            f"hypothesis file {hyp_name} and {ref_names} hold no lines: nothing to score"
        )
    for name, ref in zip(args.ref, refs):
        if len(ref) != len(hyps):
            raise DataError(
                f"reference file {name} has {len(ref)} lines but hypothesis file {hyp_name} "
                f"has {len(hyps)}: every reference file needs one line per hypothesis"
            )


def run(args: argparse.Namespace) -> dict:
    refs = [read_text_lines(r, "reference file") for r in args.ref]
    hyps = read_text_lines(args.hyp, "hypothesis file")
    check_line_counts(hyps, refs, args)
    scores = score(
        hyps,
        refs,
        lowercase=args.lowercase,
        tokenize=args.tokenize,
        metrics=args.metrics,
        moses_lc_tok=args.moses_lowercase,
        lang=args.lang,
    )
    print(json.dumps(scores, indent=1) if args.json else format_scores(scores))
    return scores


def main(argv: list[str] | None = None) -> None:
    from nmt.cli.common import run_guarded

    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
