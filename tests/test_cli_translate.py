"""nmt-translate and nmt-average end to end on a tiny real checkpoint (random weights)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import Config, DecodeConfig, TokenizerConfig, to_plain
from nmt.data.tokenizer import Tokenizer, train_model
from nmt.inference import load_for_inference
from nmt.models.builder import build_model
from nmt.search import search
from nmt.search.translator import Translator
from nmt.train.checkpoint import load_checkpoint, save_checkpoint


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real command in a subprocess (slow: a fresh interpreter imports torch)."""
    return subprocess.run(
        [sys.executable, "-m", "nmt", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _main(args: list[str], capsys, monkeypatch, stdin: str = "") -> tuple[int, str, str]:
    """The command's ``main`` in this process: (exit code, stdout, stderr)."""
    from nmt.cli import average, translate

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    module = {"translate": translate, "average": average}[args[0]]
    code = 0
    try:
        module.main(args[1:])
    except SystemExit as err:
        code = int(err.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _make_checkpoint(path: Path, tok: Tokenizer, seed: int, step: int = 0) -> None:
    cfg = OmegaConf.structured(Config)
    cfg.model.emb_dim, cfg.model.hidden_dim, cfg.model.dropout, cfg.model.init_scale = (
        16,
        16,
        0.0,
        1.0,
    )
    cfg.decode.beam_size, cfg.decode.max_len_a, cfg.decode.max_len_b = 3, 0.2, 4
    torch.manual_seed(seed)
    model = build_model(cfg.model, tok.vocab_size, tok.vocab_size)
    payload = {
        "format_version": 1,
        "config": to_plain(cfg),
        "model": model.state_dict(),
        "src_tokenizer": tok.state_dict(),
        "tgt_tokenizer": tok.state_dict(),
        "step": step,
    }
    save_checkpoint(path, payload)


@pytest.fixture(scope="module")
def run_dir(tiny_parallel, tmp_path_factory) -> Path:
    """A run folder with best.pt and two step checkpoints (tokenizer of 120 pieces)."""
    folder = tmp_path_factory.mktemp("run")
    lines = []
    for key in ("train_src", "train_tgt"):
        lines += tiny_parallel[key].read_text(encoding="utf-8").splitlines()
    tok = Tokenizer(train_model(lines, TokenizerConfig(vocab_size=120)))
    _make_checkpoint(folder / "best.pt", tok, seed=0)
    _make_checkpoint(folder / "ckpt_1.pt", tok, seed=1, step=100)
    _make_checkpoint(folder / "ckpt_2.pt", tok, seed=2, step=200)
    return folder


def test_line_count_order_and_pipes(run_dir, tiny_parallel, tmp_path, capsys, monkeypatch):
    real = tiny_parallel["test_src"].read_text(encoding="utf-8").splitlines()[:12]
    lines = [real[0], "", real[1], "   ", real[2] + " " + real[3], "\t", *real[4:12], ""]
    inp, out = tmp_path / "in.en", tmp_path / "out.fr"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = _main(
        [
            "translate",
            str(run_dir),
            "-i",
            str(inp),
            "-o",
            str(out),
            "--max-tokens",
            "40",
            "--batch-size",
            "3",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert "sentences/s" in err
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)
    got = got[:-1]
    assert all(hyp == "" for line, hyp in zip(lines, got) if not line.strip())
    # Same as translating each line alone, so batching by length kept the input order.
    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    translator = Translator(model, src_tok, tgt_tok, OmegaConf.to_object(cfg.decode))
    assert got == [translator.translate([line])[0] for line in lines]
    assert len(set(h for h in got if h)) > 3  # the sentences really differ
    # stdin -> stdout in a pipe, quiet: identical output, nothing on stderr.
    piped = _cli("translate", str(run_dir / "best.pt"), "--quiet", stdin="\n".join(lines) + "\n")
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout.split("\n")[:-1] == got


def test_workers_translate_like_one_process(run_dir, tiny_parallel, capsys, monkeypatch):
    """decode.workers=2 (forked CPU processes) gives the same n-best lists, scores (to float
    rounding: the workers run 1 thread, this process 2) and attention, for beam and sampling."""
    lines = tiny_parallel["test_src"].read_text(encoding="utf-8").splitlines()[:20]
    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    base = dataclasses.replace(OmegaConf.to_object(cfg.decode), max_sentences=3, n_best=2)
    for method in ("beam", "sample"):
        dec = dataclasses.replace(base, method=method)
        one = Translator(model, src_tok, tgt_tok, dec).translate_nbest(lines, True)
        dec2 = dataclasses.replace(dec, workers=2)
        two = Translator(model, src_tok, tgt_tok, dec2).translate_nbest(lines, True)
        assert [[t.text for t in n] for n in two] == [[t.text for t in n] for n in one]
        for a, b in zip(itertools.chain(*one), itertools.chain(*two)):
            assert b.score == pytest.approx(a.score, abs=1e-4)
            torch.testing.assert_close(b.attention, a.attention, atol=1e-4, rtol=0)
    code, out, err = _main(
        ["translate", str(run_dir), "--quiet", "--workers", "2", "--batch-size", "3"],
        capsys,
        monkeypatch,
        "\n".join(lines) + "\n",
    )
    assert code == 0, err
    assert out.splitlines() == Translator(model, src_tok, tgt_tok, base).translate(lines)


def test_batch_threads_flag_translates_like_one_search(run_dir, tiny_parallel, capsys, monkeypatch):
    """--batch-threads 2: batches searched in two threads of this process, same output."""
    lines = tiny_parallel["test_src"].read_text(encoding="utf-8").splitlines()[:20]
    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    base = dataclasses.replace(OmegaConf.to_object(cfg.decode), max_sentences=3)
    args = ["translate", str(run_dir), "--quiet", "--batch-threads", "2", "--batch-size", "3"]
    code, out, err = _main(args, capsys, monkeypatch, "\n".join(lines) + "\n")
    assert code == 0, err
    assert out.splitlines() == Translator(model, src_tok, tgt_tok, base).translate(lines)
    code, out, err = _main([*args, "--workers", "2"], capsys, monkeypatch, "a\n")
    assert code != 0 and "set one of them to 1" in err and "Traceback" not in err


def test_workers_after_a_multithreaded_parent_finish_single_threaded(
    run_dir, tiny_parallel, tmp_path, monkeypatch
):
    """This process translates with 4 torch threads first (its OpenMP pool starts), then 2
    forked workers translate the same lines: before, each worker took 4 // 2 = 2 threads and
    its first parallel matrix product hung forever (GNU OpenMP after fork). Now every
    worker runs 1 thread, finishes, and gives the same translations and scores."""
    import signal

    from nmt.search import workers

    real_search = workers.search

    def spy(*args, **kwargs):  # runs in the forked workers: note their thread counts
        (tmp_path / f"{os.getpid()}.threads").write_text(str(torch.get_num_threads()))
        return real_search(*args, **kwargs)

    def hung(signum, frame):
        raise TimeoutError("decode workers hung")

    monkeypatch.setattr(workers, "search", spy)
    lines = tiny_parallel["test_src"].read_text(encoding="utf-8").splitlines()[:12]
    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    dec = dataclasses.replace(OmegaConf.to_object(cfg.decode), max_sentences=3)
    before = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, hung)
    torch.set_num_threads(4)
    try:
        one = Translator(model, src_tok, tgt_tok, dec).translate_nbest(lines)
        signal.alarm(120)
        two = Translator(
            model, src_tok, tgt_tok, dataclasses.replace(dec, workers=2)
        ).translate_nbest(lines)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_num_threads(before)
    seen = {p.stem: p.read_text() for p in tmp_path.glob("*.threads")}
    assert seen and str(os.getpid()) not in seen and set(seen.values()) == {"1"}
    assert [n[0].text for n in two] == [n[0].text for n in one]
    for a, b in zip(itertools.chain(*one), itertools.chain(*two)):
        assert b.score == pytest.approx(a.score, abs=1e-4)


def test_workers_on_a_gpu_fall_back_to_one_process_with_a_warning():
    warnings: list[str] = []
    dec = DecodeConfig(workers=2)
    translator = Translator(None, None, None, dec, device="cuda", warn=warnings.append)
    assert translator.workers() == 1 and translator.workers() == 1
    assert len(warnings) == 1 and "decode.workers=2" in warnings[0]


def test_nbest_greedy_sample_and_attention_plots(run_dir, tmp_path, capsys, monkeypatch):
    text = "A man in an orange hat.\n\nTwo dogs run on the grass.\n"
    plots = tmp_path / "plots"
    args = ["translate", str(run_dir), "--n-best", "3", "--quiet", "--attention-plot", str(plots)]
    code, out, err = _main([*args, "--plot-count", "1"], capsys, monkeypatch, stdin=text)
    assert code == 0, err
    rows = [r.split(" ||| ") for r in out.splitlines()]
    assert [int(r[0]) for r in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3]  # line numbers from 1
    assert rows[3][1] == "" and all(len(r) == 3 for r in rows)
    scores = [float(r[2]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True) and len({r[1] for r in rows[:3]}) == 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["attention_1.png"]
    _, greedy, _ = _main(
        ["translate", str(run_dir), "--greedy", "--quiet"], capsys, monkeypatch, text
    )
    sample_args = ["translate", str(run_dir), "--sample", "--top-k", "1", "--quiet"]
    _, sample, _ = _main(sample_args, capsys, monkeypatch, text)
    assert greedy == sample and len(greedy.split("\n")) == 4


def test_errors_are_one_line(run_dir, tmp_path, capsys, monkeypatch):
    missing = _cli("translate", str(tmp_path / "nope.pt"), stdin="hello\n")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "nope.pt" in missing.stderr
    assert "Traceback" not in missing.stderr
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\x89PNG\x00\x01\xff\xfe")
    code, out, err = _main(["translate", str(run_dir), "-i", str(binary)], capsys, monkeypatch)
    assert code == 2 and out == "" and err.count("\n") == 1 and "bin.dat" in err


def test_average_last_checkpoints(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "avg.pt"
    code, _, err = _main(["average", str(run_dir), "-k", "2", "-o", str(out)], capsys, monkeypatch)
    assert code == 0 and "ckpt_1.pt, ckpt_2.pt" in err
    avg = load_checkpoint(out)
    a, b = load_checkpoint(run_dir / "ckpt_1.pt"), load_checkpoint(run_dir / "ckpt_2.pt")
    for key, value in avg["model"].items():
        assert torch.allclose(value, (a["model"][key] + b["model"][key]) / 2, atol=1e-6)
    assert "optimizer" not in avg and avg["step"] == 200
    code, text, _ = _main(["translate", str(out), "--quiet"], capsys, monkeypatch, "A dog.\n")
    assert code == 0 and text.count("\n") == 1


def test_decode_config_in_translator_is_plain():
    cfg = OmegaConf.structured(DecodeConfig)
    assert isinstance(Translator(None, None, None, cfg).cfg, DecodeConfig)


def test_truncation_warning_and_ensemble(run_dir, capsys, monkeypatch):
    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    warnings: list[str] = []
    dec = OmegaConf.to_object(cfg.decode)
    limit = len(src_tok.encode("Hi."))
    translator = Translator(model, src_tok, tgt_tok, dec, max_src_len=limit, warn=warnings.append)
    long_line = "A man in an orange hat looks at something."
    out = translator.translate(["Hi.", long_line])
    assert len(out) == 2 and len(warnings) == 1 and warnings[0].startswith("input line 2 has")
    # Truncated input translates exactly like its first pieces.
    head = torch.tensor([src_tok.encode(long_line)[:limit]])
    best = search(model, head, torch.tensor([limit]), dec)[0][0]
    assert out[1] == tgt_tok.decode(best.tokens)
    args = ["translate", str(run_dir), "--quiet", "--ensemble", str(run_dir / "ckpt_1.pt")]
    code, text, err = _main(args, capsys, monkeypatch, "A dog.\n\nTwo men.\n")
    assert code == 0 and text.count("\n") == 3 and text.split("\n")[1] == "", err
