"""Shared fixtures: the real-data mirror, an isolated cache, tiny real corpora."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import logging
import os
import sys
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def serve_http(handler: type) -> Iterator[str]:
    """Serve ``handler`` (an ``http.server`` request handler class) on 127.0.0.1 in a thread;
    yield the base URL (``http://127.0.0.1:PORT``); shut down and close on exit."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def offline_downloads(monkeypatch):
    """No mirror from the environment and no wait before the one retry: downloads go to the
    test's own server and fail fast."""
    from nmt.data import download

    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)


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


@pytest.fixture(scope="session")
def tiny_lines(tiny_parallel) -> list[str]:
    """The tiny corpus's training lines, English then French."""
    lines = []
    for key in ("train_src", "train_tgt"):
        lines += tiny_parallel[key].read_text(encoding="utf-8").splitlines()
    return lines


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_lines):
    """A joint 120-piece sentencepiece tokenizer of the tiny corpus."""
    from nmt.config import TokenizerConfig
    from nmt.data.tokenizer import Tokenizer, train_model

    return Tokenizer(train_model(tiny_lines, TokenizerConfig(vocab_size=120)))


def make_checkpoint(
    path: Path,
    src_tok,
    tgt_tok,
    arch: str = "seq2seq",
    seed: int = 0,
    attention: str = "bahdanau",
    step: int = 0,
    beam_size: int = 3,
) -> Path:
    """A random-weight checkpoint (16-dim GRU) that translates quickly; ``seed`` draws its
    weights, ``step`` is the training step it claims."""
    from omegaconf import OmegaConf

    from nmt.config import Config, to_plain
    from nmt.models.builder import build_model
    from nmt.train.checkpoint import save_checkpoint

    cfg = OmegaConf.structured(Config)
    m = cfg.model
    m.emb_dim, m.hidden_dim, m.dropout, m.init_scale, m.arch = 16, 16, 0.0, 1.0, arch
    m.attention = "none" if arch == "char_lm" else attention
    cfg.decode.beam_size, cfg.decode.max_len_a, cfg.decode.max_len_b = beam_size, 0.2, 4
    torch.manual_seed(seed)
    model = build_model(m, len(src_tok), len(tgt_tok))
    save_checkpoint(
        path,
        {
            "format_version": 1,
            "config": to_plain(cfg),
            "model": model.state_dict(),
            "src_tokenizer": src_tok.state_dict(),
            "tgt_tokenizer": tgt_tok.state_dict(),
            "step": step,
        },
    )
    return path


def one_line_error(code: int, err: str, *needles: str, out: str = "") -> str:
    """Assert a user error: exit code 2, nothing on stdout, one ``nmt: error:`` line on
    stderr holding every needle; returns that line."""
    assert code == 2 and out == "" and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_main(module, args: list[str], capsys, stdin: str | None = None, monkeypatch=None):
    """``module.main(args)`` of an argparse command: (exit code, stdout, stderr)."""
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    code = 0
    try:
        module.main(args)
    except SystemExit as err:
        code = int(err.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli_in_process(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Call an entry point's ``main()`` with ``argv``: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as err:
        code = int(err.code or 0)
    return code, capsys.readouterr().err


def step_by_step(model, src, lengths, tokens: torch.Tensor):
    """Feed ``tokens (B, T)`` to ``model`` one step at a time, as searches call it (encode,
    init_state, then step with the state carried): ``([(log_probs (B, V), attn), ...] per
    step, the final state)``."""
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    out = []
    for t in range(tokens.size(1)):
        log_probs, attn, state = model.step(tokens[:, t], state, enc)
        out.append((log_probs, attn))
    return out, state
