"""``nmt-translate RUN_DIR_OR_CHECKPOINT [-i IN] [-o OUT] [options]``: raw text in, text out.

Reads stdin and writes stdout unless ``-i`` / ``-o`` are given, so it works in pipes. Every
input line gives exactly one output line (an empty input line gives an empty line). With
``--n-best N`` every input line gives N lines ``INDEX ||| TRANSLATION ||| SCORE`` (INDEX is
the 0-based input line number, best first; an empty input gives N empty translations).
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

from nmt.config import DecodeConfig, check_decode_config
from nmt.errors import ConfigError, NMTError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="nmt-translate", description="Translate raw text with a trained nmt checkpoint."
    )
    p.add_argument("checkpoint", help="a run folder (uses best.pt, else last.pt) or a .pt file")
    p.add_argument("-i", "--input", help="input text file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument(
        "--beam", type=int, help="beam size (default: the checkpoint's decode.beam_size)"
    )
    p.add_argument("--n-best", type=int, help="write the N best translations per line")
    p.add_argument("--max-tokens", type=int, help="source tokens per decoding batch")
    p.add_argument("--batch-size", type=int, help="at most this many sentences per decoding batch")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--workers",
        type=int,
        help="CPU processes decoding batches in parallel, sharing the torch threads "
        "(default: the checkpoint's decode.workers)",
    )
    p.add_argument("--length-penalty", type=float, help="GNMT alpha (0 = raw log-probability)")
    p.add_argument("--max-len-a", type=float, help="max output length = a * source length + b")
    p.add_argument("--max-len-b", type=int)
    p.add_argument("--max-src-len", type=int, default=250, help="truncate longer inputs (pieces)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy search")
    mode.add_argument("--sample", action="store_true", help="sample instead of searching")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing line")
    p.add_argument("--attention-plot", metavar="DIR", help="write attention heatmaps (PNG) here")
    p.add_argument("--plot-count", type=int, default=5, help="sentences to plot (default 5)")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT", help="more checkpoints")
    return p.parse_args(argv)


def decode_config(base: DecodeConfig, args: argparse.Namespace) -> DecodeConfig:
    """The checkpoint's decode settings with the command line's overrides."""
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
    return cfg


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible: use --device cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_models(args: argparse.Namespace, device: torch.device):
    """The model (an Ensemble with ``--ensemble``), its tokenizers, the first checkpoint's
    decode settings and its whole config."""
    from omegaconf import OmegaConf

    from nmt.search.ensemble import Ensemble
    from nmt.train.checkpoint import load_for_inference

    model, src_tok, tgt_tok, cfg = load_for_inference(args.checkpoint, device)
    if cfg.model.arch != "seq2seq":
        raise NMTError(
            f"{args.checkpoint} is a {cfg.model.arch} checkpoint, not a translation model"
        )
    if args.ensemble:
        models = [model]
        for path in args.ensemble:
            other, other_src, other_tgt, _ = load_for_inference(path, device)
            # Same sizes are not enough: the same ids must mean the same pieces.
            if not (same_tokenizer(other_src, src_tok) and same_tokenizer(other_tgt, tgt_tok)):
                raise NMTError(
                    f"ensemble member {path} uses other vocabularies than {args.checkpoint}: "
                    "only ensemble models trained with the same tokenizers"
                )
            models.append(other)
        model = Ensemble(models).eval()
    base = (
        OmegaConf.to_object(cfg.decode) if not isinstance(cfg.decode, DecodeConfig) else cfg.decode
    )
    return model, src_tok, tgt_tok, base, cfg


def same_tokenizer(a, b) -> bool:
    """True when two tokenizers (or character vocabularies) map ids to the same pieces."""
    if type(a) is not type(b):
        return False
    if hasattr(a, "model_proto"):
        return a.model_proto == b.model_proto and a.kept == b.kept
    return getattr(a, "itos", None) == getattr(b, "itos", None)


def format_nbest(index: int, translations, n: int) -> list[str]:
    lines = [f"{index} ||| {t.text} ||| {t.score:.4f}" for t in translations[:n]]
    while len(lines) < n:
        lines.append(f"{index} |||  ||| 0.0000" if not translations else lines[-1])
    return lines


def run(args: argparse.Namespace) -> None:
    from nmt.cli.score import read_text_lines
    from nmt.search.translator import Translator

    device = resolve_device(args.device)
    model, src_tok, tgt_tok, base, _ = load_models(args, device)
    cfg = decode_config(base, args)
    lines = read_text_lines(args.input, "input file")
    translator = Translator(model, src_tok, tgt_tok, cfg, device, max_src_len=args.max_src_len)

    bar = None
    if args.input and not args.quiet:
        from tqdm import tqdm

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

    if args.attention_plot:
        from nmt.search.plots import plot_attention_maps

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


def write_output(lines: list[str], path: str | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if path is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `| head`: the reader left, which is not an error
            sys.stderr.close()
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise NMTError(f"cannot write output file {path}: {err.strerror}") from None


def main(argv: list[str] | None = None) -> None:
    from nmt.cli.common import run_guarded

    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
