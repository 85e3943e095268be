"""Shared fixtures: the real-data mirror, an isolated cache, tiny real corpora."""

from __future__ import annotations

import gzip
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NMT_DATA_MIRROR") or REPO.parent / "shared" / "data")

# Test tensors are tiny: a second thread only adds synchronisation, which stalls
# badly when the other core is busy (CI machines are shared and noisy).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only data mirror (../shared/data). CI always has it."""
    if not (SHARED_DATA / "SHA256SUMS").exists():
        pytest.fail(f"data mirror not found at {SHARED_DATA}; set NMT_DATA_MIRROR")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _own_root_logger(monkeypatch):
    """Hydra's in-process CLI attaches logging handlers to the test's captured stderr; give
    each test its own root handler list so none leaks into (or in from) another test."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder unless it asks for the session one."""
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def read_gz(path: Path, limit: int | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit else lines


@pytest.fixture(scope="session")
def tiny_parallel(shared_data, tmp_path_factory) -> dict[str, Path]:
    """A few hundred real Multi30k pairs as plain files (train 400, val 50, test 50)."""
    out = tmp_path_factory.mktemp("tiny_parallel")
    m = shared_data / "multi30k"
    files = {}
    for split, src_name, n in [
        ("train", "train", 400),
        ("valid", "val", 50),
        ("test", "test_2016_flickr", 50),
    ]:
        for side, lang in [("src", "en"), ("tgt", "fr")]:
            path = out / f"{split}.{lang}"
            path.write_text(
                "\n".join(read_gz(m / f"{src_name}.{lang}.gz", n)) + "\n", encoding="utf-8"
            )
            files[f"{split}_{side}"] = path
    return files


def run_cli_in_process(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Call an entry point's ``main()`` with ``argv``: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as err:
        code = int(err.code or 0)
    return code, capsys.readouterr().err
