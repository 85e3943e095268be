"""``nmt-average RUN_DIR [-k K] [-o OUT]`` or ``nmt-average --inputs A.pt B.pt ... -o OUT``.

Averages the model weights of the last K checkpoints of a run (by their training ``step``;
``best.pt``/``last.pt`` copies and earlier averages are skipped) or of the given files, and
writes one checkpoint with the same payload format (config, tokenizers, averaged ``model``;
optimizer and other resume state are dropped, so it is for translation, not resuming).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmt.errors import NMTError

SKIP = {"best.pt", "last.pt", "averaged.pt"}
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "sampler")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nmt-average", description="Average checkpoint weights.")
    p.add_argument("run_dir", nargs="?", help="a run folder whose last K checkpoints to average")
    p.add_argument("-k", "--last", type=int, default=5, help="how many checkpoints (default 5)")
    p.add_argument("--inputs", nargs="+", default=[], help="explicit checkpoint files instead")
    p.add_argument("-o", "--output", help="output file (default RUN_DIR/averaged.pt)")
    return p.parse_args(argv)


def pick_checkpoints(run_dir: Path, k: int) -> list[Path]:
    """The ``k`` checkpoints of a run with the highest training steps."""
    from nmt.train.checkpoint import load_checkpoint

    if not run_dir.is_dir():
        raise NMTError(f"run folder {run_dir} does not exist: pass a run folder or --inputs")
    candidates = [p for p in run_dir.rglob("*.pt") if p.name not in SKIP]
    if not candidates:
        raise NMTError(f"run folder {run_dir} has no step checkpoints to average: use --inputs")
    steps = [(int(load_checkpoint(p).get("step", 0)), p) for p in candidates]
    steps.sort(key=lambda sp: (sp[0], str(sp[1])))
    return [p for _, p in steps[-k:]]


def average(paths: list[Path]) -> dict:
    """The payload of the last file with ``model`` replaced by the mean of all files' weights."""
    from nmt.train.checkpoint import load_checkpoint

    payload = load_checkpoint(paths[-1])
    total = {k: v.double() if v.is_floating_point() else v for k, v in payload["model"].items()}
    for path in paths[:-1]:
        other = load_checkpoint(path)["model"]
        if other.keys() != total.keys() or any(other[k].shape != total[k].shape for k in total):
            raise NMTError(f"checkpoint {path} holds another architecture than {paths[-1]}")
        for key, value in other.items():
            if value.is_floating_point():
                total[key] += value.double()
    model = payload["model"]
    averaged = {
        k: (v / len(paths)).to(model[k].dtype) if v.is_floating_point() else v
        for k, v in total.items()
    }
    out = {k: v for k, v in payload.items() if k not in RESUME_KEYS}
    out["model"] = averaged
    out["averaged_from"] = [str(p) for p in paths]
    return out


def run(args: argparse.Namespace) -> Path:
    from nmt.train.checkpoint import save_checkpoint

    if args.inputs:
        paths = [Path(p) for p in args.inputs]
    elif args.run_dir:
        if args.last < 1:
            raise NMTError(f"-k must be at least 1 (got {args.last})")
        paths = pick_checkpoints(Path(args.run_dir), args.last)
    else:
        raise NMTError("nothing to average: pass a run folder or --inputs FILE ...")
    out = (
        Path(args.output) if args.output else Path(args.run_dir or paths[-1].parent) / "averaged.pt"
    )
    save_checkpoint(out, average(paths))
    names = ", ".join(p.name for p in paths)
    print(f"nmt: averaged {len(paths)} checkpoints ({names}) into {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    from nmt.cli.common import run_guarded

    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
