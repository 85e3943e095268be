"""``nmt-translate RUN_DIR_OR_CHECKPOINT [-i IN] [-o OUT] [options]``: raw text in, text out.

Reads stdin and writes stdout unless ``-i`` / ``-o`` are given, so it works in pipes. Every
input line gives exactly one output line (an empty input line gives an empty line). With
``--n-best N`` every input line gives N lines ``INDEX ||| TRANSLATION ||| SCORE`` (INDEX is
the input line number counted from 1, as sacreBLEU and attention plots count lines; best
first; an empty input gives N empty translations). Beam search keeps at least N hypotheses
(``--n-best 5 --beam 2`` searches with beam 5, and says so); ``--sample`` draws N samples
(duplicates possible); greedy search finds one translation, so it refuses ``--n-best`` > 1.
A run folder resolves to its ``best.pt`` (else ``last.pt``). Search options default to the
checkpoint's ``decode`` config. Progress (files only) and a timing line go to stderr unless
``--quiet``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.config import DecodeConfig
from nmt.config_checks import check_decode_config
from nmt.config_choices import Device
from nmt.data.readers import read_text_lines
from nmt.devices import resolve_device
from nmt.errors import ConfigError
from nmt.inference import has_attention, load_translation_model
from nmt.outputs import check_output_file, check_output_folder, write_text
from nmt.search.plots import plot_attention_maps
from nmt.search.translator import Translator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-translate",
        "Translate raw text with a trained nmt checkpoint: one output line per input line.",
        [
            "nmt-translate runs/quickstart -i test.en -o test.hyp.fr",
            'echo "A dog runs on the beach." | nmt-translate runs/quickstart',
            "nmt-translate runs/x -i in.en --n-best 5 --beam 5      # INDEX ||| TEXT ||| SCORE",
            "nmt-translate runs/x -i in.en --attention-plot plots/ --plot-count 3",
            "nmt-translate runs/a -i in.en --ensemble runs/b/best.pt runs/c/best.pt",
        ],
    )
    p.add_argument("checkpoint", help="a run folder (uses best.pt, else last.pt) or a .pt file")
    p.add_argument("-i", "--input", help="input text file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
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
    p.add_argument("--batch-size", type=int, help="at most this many sentences per decoding batch")
    p.add_argument("--device", default="auto", choices=Device.values())
    p.add_argument(
        "--workers",
        type=int,
        help="CPU processes decoding batches in parallel, one torch thread each: use the "
        "number of cores (default: the checkpoint's decode.workers)",
    )
    p.add_argument("--length-penalty", type=float, help="GNMT alpha (0 = raw log-probability)")
    p.add_argument("--max-len-a", type=float, help="max output length = a * source length + b")
    p.add_argument("--max-len-b", type=int)
    p.add_argument(
        "--max-src-len", type=int, default=250, help="truncate longer inputs (pieces, at least 1)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy search")
    mode.add_argument("--sample", action="store_true", help="sample instead of searching")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing line")
    p.add_argument(
        "--attention-plot",
        metavar="DIR",
        help="write attention heatmaps DIR/attention_<line number>.png (models with attention)",
    )
    p.add_argument("--plot-count", type=int, default=5, help="sentences to plot (default 5)")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT", help="more checkpoints")
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    """Refuse command-line values that cannot work, before anything is loaded.

    Raises:
        ConfigError: naming the option and what to use.
    """
    if args.max_src_len < 1:
        raise ConfigError(
            f"--max-src-len must be at least 1 (got {args.max_src_len}): it is the number of "
            "source pieces kept per line, and 0 would translate every line to nothing"
        )
    if args.plot_count < 1:
        raise ConfigError(f"--plot-count must be at least 1 (got {args.plot_count})")


def decode_config(base: DecodeConfig, args: argparse.Namespace) -> DecodeConfig:
    """The checkpoint's decode settings with the command line's overrides.

    Beam search keeps at least ``n_best`` hypotheses, so a smaller beam is widened to
    ``n_best`` here (with a note on stderr unless ``--quiet``): the config says what is used.

    Raises:
        ConfigError: an impossible value, or ``n_best > 1`` with greedy search.
    """
    changes = {
        "beam_size": args.beam,
        "n_best": args.n_best,
        "max_tokens": args.max_tokens,
        "max_sentences": args.batch_size,
        "workers": args.workers,
        "length_penalty": args.length_penalty,
        "max_len_a": args.max_len_a,
        "max_len_b": args.max_len_b,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
    }
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
    check_decode_config(cfg)  # the checkpoint's own values, and --top-p 2 and the like
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


def note_missing_attention(args: argparse.Namespace, model) -> None:
    """Say why ``--attention-plot`` will write nothing for a model without attention."""
    if args.attention_plot and not args.quiet and not has_attention(model):
        members = " and its ensemble members have" if args.ensemble else " has"
        print(
            f"nmt: note: no attention plots will be written to {args.attention_plot}: "
            f"{args.checkpoint}{members} no attention (model.attention=none)",
            file=sys.stderr,
        )


def format_nbest(position: int, translations, n: int) -> list[str]:
    """The ``n`` lines ``LINE ||| TEXT ||| SCORE`` of the input line at 0-based ``position``;
    LINE is its line number counted from 1 (as sacreBLEU and the attention plots count)."""
    line = position + 1
    lines = [f"{line} ||| {t.text} ||| {t.score:.4f}" for t in translations[:n]]
    while len(lines) < n:
        lines.append(f"{line} |||  ||| 0.0000" if not translations else lines[-1])
    return lines


def run(args: argparse.Namespace) -> None:
    check_options(args)
    check_outputs(args)
    device = resolve_device(args.device, "--device")
    model, src_tok, tgt_tok, base, _ = load_translation_model(
        args.checkpoint, args.ensemble, device
    )
    note_missing_attention(args, model)
    cfg = decode_config(base, args)
    lines = read_text_lines(args.input, "input file")
    translator = Translator(model, src_tok, tgt_tok, cfg, device, max_src_len=args.max_src_len)

    bar = None
    if args.input and not args.quiet and sys.stderr.isatty():  # no \r bars in a log file
        bar = tqdm(total=len(lines), unit="sent", file=sys.stderr, leave=False)
    start = time.perf_counter()
    with torch.inference_mode():
        results = translator.translate_nbest(lines, progress=bar.update if bar else None)
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.close()

    if cfg.n_best > 1:
        out_lines = [row for i, r in enumerate(results) for row in format_nbest(i, r, cfg.n_best)]
    else:
        out_lines = [r[0].text if r else "" for r in results]
    write_output(out_lines, args.output)

    if args.attention_plot and has_attention(model):  # else note_missing_attention said why
        # Attention is kept only for the plotted sentences (keeping it for every
        # hypothesis of a whole file made beam search several times slower).
        first = lines[: args.plot_count]
        with torch.inference_mode():
            plotted = translator.translate_nbest(first, return_attention=True)
        written = plot_attention_maps(
            translator, first, plotted, Path(args.attention_plot), args.plot_count
        )
        if not args.quiet:
            print(f"nmt: wrote {written} attention plots to {args.attention_plot}", file=sys.stderr)
    if not args.quiet:
        n_tokens = sum(len(r[0].tokens) for r in results if r)
        rate = len(lines) / elapsed if elapsed > 0 else float("inf")
        print(
            f"nmt: translated {len(lines)} lines in {elapsed:.2f}s ({rate:.1f} sentences/s, "
            f"{n_tokens / max(elapsed, 1e-9):.0f} target tokens/s, {cfg.method}"
            f"{' ' + str(cfg.beam_size) if cfg.method == 'beam' else ''}, {device})",
            file=sys.stderr,
        )


def check_outputs(args: argparse.Namespace) -> None:
    """Every output is writable, and none is an input, before anything is loaded."""
    inputs = [args.input] if args.input else []
    if args.output:
        check_output_file(args.output, "-o/--output", inputs)
    if args.attention_plot:
        check_output_folder(args.attention_plot, "--attention-plot")


def write_output(lines: list[str], path: str | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if path is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `| head`: the reader left, which is not an error
            sys.stderr.close()
        return
    write_text(path, text)  # a temporary renamed at the end: never a half-written file


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
