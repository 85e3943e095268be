"""``python -m nmt <command> [args]``: the same commands as the ``nmt-*`` scripts."""

from __future__ import annotations

import importlib
import importlib.util
import sys

COMMANDS = {
    "prepare": "nmt.cli.prepare",
    "train": "nmt.cli.train",
    "translate": "nmt.cli.translate",
    "score": "nmt.cli.score",
    "evaluate": "nmt.cli.evaluate",
    "generate": "nmt.cli.generate",
    "average": "nmt.cli.average",
    "bench": "nmt.cli.bench",
}


def main() -> None:
    available = {name: mod for name, mod in COMMANDS.items() if importlib.util.find_spec(mod)}
    if len(sys.argv) < 2 or sys.argv[1] not in available:
        print(f"usage: python -m nmt {{{','.join(available)}}} [args...]", file=sys.stderr)
        sys.exit(2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"nmt-{command}"
    importlib.import_module(available[command]).main()


if __name__ == "__main__":
    main()
