"""``nmt-average RUN_DIR [-k K] [-o OUT]`` or ``nmt-average --inputs A.pt B.pt ... -o OUT``.

Averages the model weights of a run's step checkpoints (by their training ``step``;
``best.pt``/``last.pt`` copies and earlier averages are skipped) or of the given files, and
writes one checkpoint with the same payload format (config, tokenizers, averaged ``model``;
optimizer and other resume state are dropped, so it is for translation, not resuming).

Without ``-k`` every step checkpoint of the run is averaged (training keeps the last
``train.keep_last``, 2 by default); ``-k K`` takes the K latest, and when fewer exist it
averages those and says so. Averaging one checkpoint would only copy it, so a run folder
holding a single step checkpoint is refused unless ``-k 1`` asks for exactly that, and
``--inputs`` needs at least two files. The output folder must exist and be writable; this
is checked before any checkpoint is loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.errors import NMTError
from nmt.outputs import check_output_file
from nmt.train.checkpoint import load_checkpoint, save_checkpoint

SKIP = {"best.pt", "last.pt", "averaged.pt"}
# What an averaged checkpoint keeps: a translation payload (Trainer.checkpoint(full=False));
# the resume state of a last.pt given with --inputs is dropped.
KEPT_KEYS = (
    "format_version", "config", "model", "src_tokenizer", "tgt_tokenizer", "lexical_table",
    "step", "epoch", "best",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-average",
        "Average the weights of a run's step checkpoints (or of given files) into one "
        "checkpoint for translation.",
        [
            "nmt-average runs/x                      # every step_*.pt -> runs/x/averaged.pt",
            "nmt-average runs/x -k 3 -o runs/x/avg3.pt",
            "nmt-average --inputs a/best.pt b/best.pt -o ab.pt",
        ],
        notes="Averaging a single checkpoint only copies it: a run folder with one step "
        "checkpoint needs -k 1, and --inputs needs at least two files.",
    )
    p.add_argument("run_dir", nargs="?", help="a run folder whose step checkpoints to average")
    p.add_argument(
        "-k",
        "--last",
        type=int,
        metavar="K",
        help="average the K latest step checkpoints (default: all of them; fewer when fewer "
        "exist, which is said; -k 1 copies the latest one's weights)",
    )
    p.add_argument(
        "--inputs",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="explicit checkpoint files instead (at least two)",
    )
    p.add_argument("-o", "--output", help="output file (default RUN_DIR/averaged.pt)")
    return p.parse_args(argv)


def pick_checkpoints(run_dir: Path, k: int | None) -> tuple[list[Path], int]:
    """The ``k`` checkpoints of a run with the highest training steps (all when ``k`` is
    None), and how many step checkpoints the run holds."""
    if not run_dir.is_dir():
        raise NMTError(f"run folder {run_dir} does not exist: pass a run folder or --inputs")
    candidates = [p for p in run_dir.rglob("*.pt") if p.name not in SKIP]
    steps = []
    for path in candidates:
        payload = load_checkpoint(path)
        if "averaged_from" not in payload:  # an earlier average saved under another name
            steps.append((int(payload.get("step", 0)), path))
    if not steps:
        raise NMTError(f"run folder {run_dir} has no step checkpoints to average: use --inputs")
    steps.sort(key=lambda sp: (sp[0], str(sp[1])))
    chosen = steps if k is None else steps[-k:]
    return [p for _, p in chosen], len(steps)


def average(paths: list[Path]) -> dict:
    """The payload of the last file with ``model`` replaced by the mean of all files' weights."""
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
    out = {k: v for k, v in payload.items() if k in KEPT_KEYS}
    out["model"] = averaged
    out["averaged_from"] = [str(p) for p in paths]
    return out


def run(args: argparse.Namespace) -> Path:
    if args.last is not None and args.last < 1:
        raise NMTError(f"-k must be at least 1 (got {args.last})")
    if args.inputs:
        if args.last is not None:
            raise NMTError(
                "-k picks checkpoints of a run folder: with --inputs every file given is averaged"
            )
        if len(args.inputs) < 2:
            raise NMTError(
                f"--inputs needs at least two checkpoints (got only {args.inputs[0]}): "
                "averaging one would only copy it"
            )
    elif not args.run_dir:
        raise NMTError("nothing to average: pass a run folder or --inputs FILE ...")
    base = Path(args.run_dir) if args.run_dir else Path(args.inputs[-1]).parent
    out = Path(args.output) if args.output else base / "averaged.pt"
    # Before the (slow) loads, so a bad -o never fails after all the work.
    check_output_file(out, "-o" if args.output else "output file", args.inputs)
    if args.inputs:
        paths, found = [Path(p) for p in args.inputs], len(args.inputs)
    else:
        paths, found = pick_checkpoints(Path(args.run_dir), args.last)
        if found == 1 and args.last != 1:
            raise NMTError(
                f"run folder {args.run_dir} holds one step checkpoint ({paths[0].name}): "
                "averaging it would only copy it; pass -k 1 to write its weights anyway, or "
                "keep more checkpoints when training (train.keep_last)"
            )
    save_checkpoint(out, average(paths), retry_hint="then run nmt-average again")
    names = ", ".join(p.name for p in paths)
    if args.last == 1:
        print(
            f"nmt: wrote the weights of {names} into {out} (-k 1: nothing averaged)",
            file=sys.stderr,
        )
    elif args.last is not None and found < args.last:
        print(
            f"nmt: averaged {len(paths)} checkpoints ({found} of the {args.last} asked for "
            f"exist): {names} into {out}",
            file=sys.stderr,
        )
    else:
        print(f"nmt: averaged {len(paths)} checkpoints ({names}) into {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
