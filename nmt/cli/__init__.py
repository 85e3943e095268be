"""Command-line entry points: thin wrappers around plain functions that tests call."""

from __future__ import annotations

import argparse


def make_parser(
    prog: str, description: str, examples: list[str], notes: str = ""
) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` says what the command does and shows examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    if notes:
        epilog = f"{notes.strip()}\n\n{epilog}"
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
