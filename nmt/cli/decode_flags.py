"""``nmt-translate``'s decoding flags: their definitions and how they change a checkpoint's
``decode`` settings.

Every :class:`~nmt.config.DecodeConfig` field has a flag (``DECODE_FLAGS``; ``method`` is
``--greedy`` / ``--sample`` / ``--beam``). A flag left unset keeps the checkpoint's value.
The values are checked by :func:`nmt.config_checks.check_decode_config`, as a config's are;
its one-line message is led by the flag that set the bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from nmt.config import DecodeConfig
from nmt.config_checks import check_decode_config
from nmt.config_choices import Device
from nmt.errors import ConfigError
from nmt.quantize_scheme import SCHEMES

# DecodeConfig field -> the argparse dest of its flag ("method" is --greedy/--sample/--beam).
DECODE_FLAGS = {
    "beam_size": "beam",
    "n_best": "n_best",
    "max_tokens": "max_tokens",
    "max_sentences": "batch_size",
    "workers": "workers",
    "batch_threads": "batch_threads",
    "length_penalty": "length_penalty",
    "length_normalize": "length_normalize",
    "coverage_penalty": "coverage_penalty",
    "min_len": "min_len",
    "max_len_a": "max_len_a",
    "max_len_b": "max_len_b",
    "no_repeat_ngram_size": "no_repeat_ngram_size",
    "suppress_unk": "suppress_unk",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "seed": "seed",
    "shortlist": "shortlist",
    "shortlist_frequent": "shortlist_frequent",
}


def add_decode_flags(p: argparse.ArgumentParser) -> None:
    """The search flags, ``--device``, ``--quantize`` and ``--max-src-len`` (in this order in
    ``--help``)."""
    p.add_argument(
        "--beam", type=int, help="beam size (default: the checkpoint's decode.beam_size)"
    )
    p.add_argument(
        "--n-best",
        type=int,
        help="write the N best translations per line as 'LINE ||| TEXT ||| SCORE' (LINE counts "
        "from 1; beam search widens the beam to at least N, --sample draws N samples)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        help="decoding batch budget: source tokens x beam (padding included)",
    )
    p.add_argument(
        "--batch-size",
        "--max-sentences",
        type=int,
        help="at most this many sentences per decoding batch (0 = only --max-tokens limits it)",
    )
    p.add_argument(
        "--device", default="auto", choices=Device.values(), help="where to decode (default: auto)"
    )
    add_quantize_flag(p)
    add_shortlist_flags(p)
    p.add_argument(
        "--workers",
        type=int,
        help="CPU processes decoding batches in parallel, one torch thread each: use the "
        "number of cores (default: the checkpoint's decode.workers)",
    )
    p.add_argument(
        "--batch-threads",
        type=int,
        help="threads of this process decoding batches in parallel, sharing its torch "
        "threads: use the number of cores (default: the checkpoint's decode.batch_threads)",
    )
    _add_ranking_flags(p)
    p.add_argument(
        "--max-src-len", type=int, default=250, help="truncate longer inputs (pieces, at least 1)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy search")
    mode.add_argument("--sample", action="store_true", help="sample instead of searching")
    p.add_argument("--temperature", type=float, help="sampling: divide the logits by T")
    p.add_argument("--top-k", type=int, help="sampling: draw among the K likeliest (0 = all)")
    p.add_argument("--top-p", type=float, help="sampling: draw within probability mass P (nucleus)")
    p.add_argument("--seed", type=int, help="sampling: random seed")


def add_quantize_flag(p: argparse.ArgumentParser) -> None:
    """``--quantize int8`` (nmt-translate, nmt-evaluate, nmt-serve)."""
    p.add_argument(
        "--quantize",
        choices=SCHEMES,
        help="int8: decode on the CPU with the output layer, the per-step attention layers and "
        "the GRU/LSTM weights in int8, one scale per row (torch dynamic quantization; "
        "--device auto means cpu, cuda is refused)",
    )


def add_shortlist_flags(p: argparse.ArgumentParser) -> None:
    """``--shortlist K`` and ``--shortlist-frequent N`` (nmt-translate, nmt-evaluate)."""
    p.add_argument(
        "--shortlist",
        type=int,
        metavar="K",
        help="lexical shortlist: compute each sentence's output layer only for the K likeliest "
        "target pieces of each of its source pieces (the checkpoint's lexical table, K <= 100) "
        "and the most frequent ones; faster, slightly different output (0 = off, the default)",
    )
    p.add_argument(
        "--shortlist-frequent",
        type=int,
        metavar="N",
        help="with --shortlist: the N most frequent target pieces every sentence may use "
        "(default: the checkpoint's decode.shortlist_frequent, 100)",
    )


def _add_ranking_flags(p: argparse.ArgumentParser) -> None:
    """Length limits, penalties and the rules that forbid tokens."""
    p.add_argument("--length-penalty", type=float, help="GNMT alpha (0 = raw log-probability)")
    p.add_argument("--max-len-a", type=float, help="max output length = a * source length + b")
    p.add_argument("--max-len-b", type=int, help="see --max-len-a")
    p.add_argument("--min-len", type=int, help="emit at least N tokens before ending a sentence")
    p.add_argument(
        "--length-normalize",
        action=argparse.BooleanOptionalAction,
        help="rank by log-probability / length instead of the GNMT length penalty",
    )
    p.add_argument(
        "--coverage-penalty",
        type=float,
        metavar="BETA",
        help="GNMT coverage penalty weight for beam search (0 = off; models with attention)",
    )
    p.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        metavar="N",
        help="never repeat an n-gram of N tokens within one output (0 = off)",
    )
    p.add_argument(
        "--suppress-unk",
        action=argparse.BooleanOptionalAction,
        help="never emit the unknown piece (written ' ⁇ ')",
    )


def decode_config(base: DecodeConfig, args: argparse.Namespace) -> DecodeConfig:
    """The checkpoint's decode settings with the command line's overrides.

    Beam search keeps at least ``n_best`` hypotheses, so a smaller beam is widened to
    ``n_best`` here (with a note on stderr unless ``--quiet``): the config says what is used.

    Raises:
        ConfigError: an impossible value, or ``n_best > 1`` with greedy search.
    """
    changes = {key: getattr(args, dest) for key, dest in DECODE_FLAGS.items()}
    cfg = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    if args.greedy:
        cfg = dataclasses.replace(cfg, method="greedy")
    elif args.sample:
        cfg = dataclasses.replace(cfg, method="sample")
    elif args.beam is not None:
        cfg = dataclasses.replace(cfg, method="beam")
    if cfg.method == "beam" and cfg.beam_size < 1:
        raise ConfigError(f"--beam must be at least 1 (got {cfg.beam_size})")
    if cfg.n_best < 1:
        raise ConfigError(f"--n-best must be at least 1 (got {cfg.n_best})")
    try:
        check_decode_config(cfg)  # the checkpoint's own values, and --top-p 2 and the like
    except ConfigError as err:
        raise ConfigError(name_the_flag(str(err), changes)) from None
    n_best = f"--n-best {cfg.n_best}" if args.n_best is not None else f"decode.n_best={cfg.n_best}"
    if cfg.method == "greedy" and cfg.n_best > 1:
        raise ConfigError(
            f"{n_best} needs beam search or sampling: greedy search finds one translation "
            f"per line; use --beam {cfg.n_best} (or more) or --sample"
        )
    if cfg.method == "beam" and cfg.n_best > cfg.beam_size:
        if not args.quiet:
            print(
                f"nmt: note: {n_best} needs a beam of at least {cfg.n_best}: searching with "
                f"beam {cfg.n_best} (not {cfg.beam_size})",
                file=sys.stderr,
            )
        cfg = dataclasses.replace(cfg, beam_size=cfg.n_best)
    return cfg


def name_the_flag(message: str, changes: dict) -> str:
    """``message`` about ``decode.KEY=...``, led by the flag that set KEY when one did."""
    key = message.removeprefix("decode.").partition("=")[0]
    if message.startswith("decode.") and changes.get(key) is not None:
        flag = "--" + DECODE_FLAGS[key].replace("_", "-")
        return f"{flag} {changes[key]}: {message}"
    return message
