"""``python -m nmt <command> [args]``: the same commands as the ``nmt-*`` scripts."""

from __future__ import annotations

import importlib
import importlib.util
import sys

# command: (module, what it does)
COMMANDS = {
    "prepare": ("nmt.cli.prepare", "download or copy, clean, tokenize and cache a corpus"),
    "train": ("nmt.cli.train", "train a model into a run folder (Hydra config)"),
    "translate": ("nmt.cli.translate", "translate text files or stdin with a checkpoint"),
    "evaluate": ("nmt.cli.evaluate", "translate a run's test sets and score them"),
    "score": ("nmt.cli.score", "sacreBLEU BLEU, chrF and TER of a hypothesis file"),
    "generate": ("nmt.cli.generate", "sample text from a character language model"),
    "average": ("nmt.cli.average", "average the weights of a run's checkpoints"),
    "report": ("nmt.cli.report", "compare runs: a Markdown table, learning curves"),
    "bench": ("nmt.cli.bench", "speed benchmark of the reference model (JSON)"),
    "serve": ("nmt.cli.serve", "serve a checkpoint over HTTP: JSON API and a web page"),
    "gpu-check": ("nmt.cli.gpu_check", "prove training and decoding on a CUDA GPU (JSON)"),
}

EXAMPLES = """\
examples:
  python -m nmt prepare data=multi30k_en_fr
  python -m nmt train data=multi30k_en_fr hydra.run.dir=runs/x train.max_minutes=10
  echo "A dog runs." | python -m nmt translate runs/x
  python -m nmt <command> --help      what a command does, its options and examples"""


def usage(available: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in available)
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in available.items())
    return f"usage: python -m nmt <command> [args...]\n\ncommands:\n{rows}\n\n{EXAMPLES}"


def main() -> None:
    available = {name: cmd for name, cmd in COMMANDS.items() if importlib.util.find_spec(cmd[0])}
    if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help"):
        print(usage(available))
        sys.exit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in available:
        given = f"unknown command {sys.argv[1]!r}\n" if len(sys.argv) >= 2 else ""
        print(f"{given}{usage(available)}", file=sys.stderr)
        sys.exit(2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"nmt-{command}"
    importlib.import_module(available[command][0]).main()


if __name__ == "__main__":
    main()
