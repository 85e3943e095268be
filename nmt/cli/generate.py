"""``nmt-generate``: sample text from a trained character language model.

nmt-generate runs/shakespeare_char/<run> --chars 600 --temperature 0.8
nmt-generate runs/x --prompt "ROMEO:" --top-k 10 --seed 3
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.config_choices import Device
from nmt.data.charvocab import NOT_TEXT
from nmt.devices import resolve_device
from nmt.errors import NMTError
from nmt.inference import load_for_inference
from nmt.search.sampling_lm import sample_lm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-generate",
        "Sample text from a trained character language model (recipes/shakespeare_char).",
        [
            "nmt-generate runs/shakespeare_char/<run> --chars 600 --temperature 0.8",
            'nmt-generate runs/x --prompt "ROMEO:" --top-k 10 --seed 3',
        ],
    )
    p.add_argument("checkpoint", help="a char-LM run folder (best.pt, else last.pt) or .pt file")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a new line)")
    p.add_argument("--chars", type=int, default=500, help="characters to generate")
    p.add_argument(
        "--temperature",
        type=float,
        help="0 = always the most probable character (default: the run's decode.temperature)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        help="sample among the k most probable characters (0 = all; default: decode.top_k)",
    )
    p.add_argument("--seed", type=int, help="default: the run's decode.seed")
    p.add_argument("--device", default="auto", choices=Device.values())
    return p.parse_args(argv)


def check_sampling(temperature: float, top_k: int, args: argparse.Namespace) -> None:
    """Refuse a negative ``top_k`` and a negative or non-finite temperature, naming the
    option (or the checkpoint's ``decode`` key when the value came from there).

    Raises:
        NMTError: one sentence saying which values work.
    """
    if top_k < 0:
        name = "--top-k" if args.top_k is not None else "the checkpoint's decode.top_k"
        raise NMTError(
            f"{name} must not be negative (got {top_k}): use 0 to sample among all "
            "characters, or k > 0 to sample among the k most probable"
        )
    if not 0 <= temperature < math.inf:
        name = (
            "--temperature"
            if args.temperature is not None
            else "the checkpoint's decode.temperature"
        )
        raise NMTError(
            f"{name} must be a finite number >= 0 (got {temperature}): 0 always picks the "
            "most probable character, 1 samples from the model's distribution"
        )


def generate(args: argparse.Namespace) -> str:
    """Print and return ``prompt`` + the sampled continuation."""
    device = resolve_device(args.device, "--device")
    model, vocab, _, cfg = load_for_inference(args.checkpoint, device)
    if cfg.model.arch != "char_lm":
        raise NMTError(f"{args.checkpoint} is a {cfg.model.arch} model: use nmt-translate")
    if args.chars < 0:
        raise NMTError(f"--chars must be >= 0, got {args.chars}")
    prompt = vocab.encode(args.prompt).tolist()
    if not prompt:
        raise NMTError("--prompt holds no character of the model's vocabulary")
    seed = cfg.decode.seed if args.seed is None else args.seed
    temperature = cfg.decode.temperature if args.temperature is None else args.temperature
    top_k = cfg.decode.top_k if args.top_k is None else args.top_k
    check_sampling(temperature, top_k, args)
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = sample_lm(model, prompt, args.chars, temperature, top_k, generator, NOT_TEXT)
    text = args.prompt + vocab.decode(ids)
    sys.stdout.write(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    run_guarded(generate, parse_args(argv))


if __name__ == "__main__":
    main()
