"""``nmt-gpu-check``: prove training and decoding on a CUDA GPU in one short run (JSON).

    nmt-gpu-check                          # an estimated 6-8 minutes, writes gpu_check.json
    nmt-gpu-check --minutes 1 --skip-tests # a shorter look
    nmt-gpu-check train.lr=1e-3            # Hydra overrides for the recipe, after the options

See :mod:`nmt.gpu_check` for the phases and what each number means. The time above is an
estimate: the check has not run on a GPU yet. Bad options fail first, on any machine.
Without a CUDA GPU it prints one line (a CPU build of torch or no visible GPU), writes
nothing and exits 0 (there is nothing to check). With one, it exits 1 when a test failed or
a phase could not run (the JSON says which), else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.errors import NMTError
from nmt.gpu_check import CheckPlan, cuda_missing, run_check
from nmt.outputs import write_atomic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = CheckPlan()
    p = make_parser(
        "nmt-gpu-check",
        "Prove training and decoding on a CUDA GPU: the CUDA tests, recipes/multi30k_en_fr "
        "for a few minutes (bf16), beam 5 on test_2016_flickr, a profiled step (JSON).",
        [
            "nmt-gpu-check                          # writes gpu_check.json",
            "nmt-gpu-check --minutes 1 --skip-tests --out quick.json",
            "nmt-gpu-check --max-tokens 24000 --run-dir runs/gpu_check/big",
        ],
        notes="Without a CUDA GPU: one line, nothing written, exit 0.",
    )
    p.add_argument("--minutes", type=float, default=defaults.minutes, help="training time")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=defaults.max_tokens,
        help="train.max_tokens, padding included (the recipe's CPU budget is 3000)",
    )
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=defaults.precision)
    p.add_argument(
        "--profile-steps", type=int, default=defaults.profile_steps, help="under torch.profiler"
    )
    p.add_argument(
        "--decode-batch", type=int, default=defaults.decode_batch, help="sentences per batch"
    )
    p.add_argument("--skip-tests", action="store_true", help="do not run pytest -m cuda")
    p.add_argument(
        "--run-dir", help="the training run's folder, new or empty (default runs/gpu_check/<time>)"
    )
    p.add_argument("--out", default="gpu_check.json", help="the JSON file (default gpu_check.json)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the recipe (KEY=VALUE)")
    return p.parse_args(argv)


def plan_of(args: argparse.Namespace) -> CheckPlan:
    if args.minutes <= 0:
        raise NMTError(f"--minutes must be positive (got {args.minutes:g})")
    for option, value in (
        ("--max-tokens", args.max_tokens),
        ("--decode-batch", args.decode_batch),
        ("--profile-steps", args.profile_steps),
    ):
        if value < 1:
            raise NMTError(f"{option} must be at least 1 (got {value})")
    return CheckPlan(
        minutes=args.minutes,
        max_tokens=args.max_tokens,
        precision=args.precision,
        profile_steps=args.profile_steps,
        decode_batch=args.decode_batch,
        tests=not args.skip_tests,
        overrides=list(args.overrides),
        **({"run_dir": args.run_dir} if args.run_dir else {}),
    )


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any] | None:
    """The check, or ``None`` (after its one line) without a CUDA GPU."""
    plan = plan_of(args)  # first, so a bad option fails on any machine
    missing = cuda_missing()
    if missing:
        print(missing)
        return None
    out = Path(args.out)

    def save(result: dict[str, Any]) -> None:  # after each phase: a run cut short keeps them
        write_atomic(out, (json.dumps(result, indent=2) + "\n").encode("utf-8"))

    result = run_check(plan, save, invoked=" ".join(["nmt-gpu-check", *argv]))
    print(format_summary(result))
    print(f"wrote {out} ({result['wall_seconds']} s)")
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    result = run_guarded(run, parse_args(argv), argv)
    if result is not None and not result["ok"]:
        sys.exit(1)


def format_summary(result: dict[str, Any]) -> str:
    """The check's result as a Markdown table (what docs and READMEs quote)."""
    env = result["environment"]
    lines = [
        f"nmt gpu-check: {env['device']} (compute {env['capability']}, {env['memory_gib']} GiB), "
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}",
        "| phase | result |",
        "|---|---|",
    ]
    plan = result["plan"]
    for name in ("tests", "prepare", "profile", "train", "decode"):
        lines.append(f"| {name} | {_cell(name, result.get(name, {}), plan)} |")
    lines.append(f"ok: {str(result['ok']).lower()}")
    return "\n".join(lines)


def _cell(name: str, r: dict[str, Any], plan: dict[str, Any]) -> str:
    if "error" in r or "not_run" in r:
        return r.get("error") or f"not run ({r['not_run']})"
    if name == "tests":
        text = f"pytest -m cuda: {r.get('passed', 0)} passed, {r.get('failed', 0)} failed, "
        text += f"{r.get('errors', 0)} errors, {r.get('skipped', 0)} skipped ({r['seconds']} s)"
        return text + "".join(f"; FAILED {t}" for t in r.get("failing", []))
    if name == "prepare":
        return f"{r['seconds']} s"
    if name == "profile":
        split = r["time_split"]
        top = ", ".join(
            f"{op['name']} {op['device_ms_per_step']} ms" for op in split["top_ops"][:3]
        )
        return (
            f"{r['ms_per_step']} ms/step, {r['tgt_tok_s']:,} tgt tok/s "
            f"({r['tgt_tokens_per_update']:,} tgt tok/update); profiled: host "
            f"{split['host_ms_per_step']} ms, device {split['device_ms_per_step']} ms per step; "
            f"top: {top}"
        )
    if name == "train":
        bleu = r["valid_bleu"]
        return (
            f"{plan['minutes']:g} min {plan['precision']}, max_tokens {plan['max_tokens']}: "
            f"{r['steps']} updates, {r['epochs']} epochs, {r['tgt_tok_s'] or 0:,} tgt tok/s "
            f"(median), peak {r['peak_cuda_mib']:,} MiB; val BLEU best {r['best_valid_bleu']} "
            f"(per validation: {', '.join(str(b) for b in bleu)})"
        )
    return (
        f"{r['split']} beam 5: {r['sentences']} sentences, {r['sent_s']} sent/s, "
        f"BLEU {r['bleu']}, chrF {r['chrf']}"
    )


if __name__ == "__main__":
    main()
