"""Values that make no sense, and options whose meaning was not what they said (issue #16).

Empty score files, impossible search and sampling options, folders given as corpus files,
one split given twice, a beam silently widened by ``--n-best``, torch's text in the message
about a damaged checkpoint, ``nmt-average`` defaults and its output folder, and the numbering
of n-best lines. Everything runs in this process through the entry points' ``main``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, one_line_error, run_cli_in_process, run_main
from hydra import compose, initialize_config_dir

from nmt.config import DecodeConfig, conf_dir, register_configs
from nmt.data.charvocab import CharVocab
from nmt.errors import ConfigError, DataError
from nmt.train.checkpoint import load_checkpoint

LINES = ["A man in an orange hat.", "Two dogs run on the grass.", "A girl is eating."]
# Texts of torch and zipfile that must never reach the user.
TORCH_TEXT = (
    "PytorchStreamReader",
    "central directory",
    "zip archive",
    "Errno",
    "Invalid argument",
)


def _one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    return one_line_error(code, err, *needles, out=out)


def _checkpoint(path: Path, tok, arch: str = "seq2seq", attention: str = "bahdanau", step=0):
    return make_checkpoint(
        path, tok, tok, arch=arch, seed=step, attention=attention, step=step, beam_size=2
    )


@pytest.fixture(scope="module")
def ckpts(tiny_lines, tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    lines, tok = tiny_lines, tiny_tokenizer
    chars = CharVocab.build("".join(lines[:50]))
    return {
        "tok": tok,
        "good": _checkpoint(folder / "good.pt", tok),
        "no_attention": _checkpoint(folder / "plain.pt", tok, attention="none"),
        "char_lm": _checkpoint(folder / "lm.pt", chars, arch="char_lm", attention="none"),
    }


def _input(tmp_path: Path, lines: list[str] = LINES) -> str:
    path = tmp_path / "in.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


# --- 5. nmt-score with nothing to score -------------------------------------------------


def test_score_of_empty_files_is_one_line(tmp_path, capsys):
    from nmt.cli import score

    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("", encoding="utf-8")
    ref.write_text("", encoding="utf-8")
    code, out, err = run_main(score, ["-r", str(ref), str(hyp)], capsys)  # before: IndexError
    _one_line_error(code, out, err, "hyp.txt", "ref.txt", "hold no lines: nothing to score")
    with pytest.raises(DataError, match="nothing to score"):  # the library function too
        score.score([], [[]])


def test_score_of_an_empty_hypothesis_file_names_both_files(tmp_path, capsys):
    from nmt.cli import score

    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("", encoding="utf-8")
    ref.write_text("Un chien.\nDeux chats.\n", encoding="utf-8")
    code, out, err = run_main(score, ["-r", str(ref), str(hyp)], capsys)
    _one_line_error(
        code, out, err, f"reference file {ref} has 2 lines but hypothesis file {hyp} has 0"
    )


# --- 6a. --max-src-len --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3"])
def test_translate_max_src_len_below_one_is_one_line(ckpts, tmp_path, capsys, value):
    from nmt.cli import translate

    out = tmp_path / "out.txt"
    args = [str(ckpts["good"]), "-i", _input(tmp_path), "-o", str(out), "--max-src-len", value]
    code, stdout, err = run_main(translate, args, capsys)  # before: every output line empty
    _one_line_error(code, stdout, err, f"--max-src-len must be at least 1 (got {value})")
    assert not out.exists()


# --- 6b. nmt-generate sampling options ----------------------------------------------------


GENERATE_BAD = {
    "--top-k=-3": "--top-k must not be negative (got -3)",  # before: silently sampled all
    "--temperature=-1": "--temperature must be a finite number >= 0 (got -1.0)",
    "--temperature=nan": "--temperature must be a finite number >= 0 (got nan)",
    "--temperature=inf": "--temperature must be a finite number >= 0 (got inf)",
}


def test_generate_refuses_negative_top_k_and_bad_temperatures(ckpts, capsys):
    from nmt.cli import generate

    base = [str(ckpts["char_lm"]), "--chars", "8", "--device", "cpu", "--prompt", "A"]
    for option, needle in GENERATE_BAD.items():
        _one_line_error(*run_main(generate, [*base, option], capsys), needle)
    # 0 keeps its documented meaning: the most probable character; no top-k limit.
    for option in ("--temperature=0", "--top-k=0"):
        code, out, err = run_main(generate, [*base, option], capsys)
        assert code == 0 and len(out) == len("A") + 8 + 1, err


def test_translate_sampling_temperature_must_be_finite(ckpts, tmp_path, capsys):
    from nmt.cli import translate

    args = [str(ckpts["good"]), "-i", _input(tmp_path), "--sample", "--quiet"]
    for value in ("inf", "nan"):  # before, inf: a RuntimeError traceback from torch.multinomial
        code, out, err = run_main(translate, [*args, "--temperature", value], capsys)
        _one_line_error(code, out, err, f"decode.temperature={value} must be a finite number")


# --- 6c/6d. corpus settings ---------------------------------------------------------------


def _cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=["data=local", "data.test_splits=[]", *overrides])


def _files(tiny_parallel, **changed) -> list[str]:
    files = {k: tiny_parallel[k] for k in ("train_src", "train_tgt", "valid_src", "valid_tgt")}
    return [f"data.local.{k}={v}" for k, v in {**files, **changed}.items()]


@pytest.mark.parametrize("key", ["train_src", "valid_tgt"])
def test_a_folder_as_corpus_file_says_it_is_a_folder(
    tiny_parallel, tmp_path, monkeypatch, capsys, key
):
    from nmt.cli.prepare import main as prepare_main
    from nmt.cli.train import main as train_main
    from nmt.data.prepare import prepare

    folder = tmp_path / "corpus_folder"
    folder.mkdir()
    overrides = _files(tiny_parallel, **{key: folder})
    pattern = rf"data\.local\.{key} is .*corpus_folder, a folder, not a file"
    with pytest.raises(DataError, match=pattern):  # before: "... does not exist"
        prepare(_cfg(*overrides))
    for name, main in (("nmt-prepare", prepare_main), ("nmt-train", train_main)):
        argv = [name, "data=local", *overrides, f"hydra.run.dir={tmp_path / name}"]
        code, err = run_cli_in_process(main, argv, monkeypatch, capsys)
        _one_line_error(code, "", err, f"data.local.{key} is {folder}, a folder, not a file")


def test_a_folder_given_to_the_reader_says_it_is_a_folder(tmp_path):
    from nmt.data.readers import read_lines

    with pytest.raises(DataError, match="is a folder, not a file"):
        read_lines(tmp_path)


@pytest.mark.parametrize(
    ("tsv", "pair", "needle"),
    [
        ("train_tsv", ("train_src", "train_tgt"), "data.local.train_src and data.local.train_tgt"),
        ("valid_tsv", ("valid_src",), "data.local.valid_src"),
        ("test_tsv", ("test_src", "test_tgt"), "data.local.test_src and data.local.test_tgt"),
    ],
    ids=["train", "valid", "test"],
)
def test_a_split_given_as_tsv_and_as_files_is_refused_before_anything_is_read(
    tiny_parallel, tmp_path, tsv, pair, needle
):
    from nmt.data.prepare import prepare
    from nmt.train.run import train

    split = tsv.split("_")[0]
    overrides = [f"data.local.{tsv}={tmp_path / 'never_read.tsv'}"]  # does not even exist
    overrides += [f"data.local.{k}={tiny_parallel.get(k, tmp_path / k)}" for k in pair]
    message = re.escape(f"data.local.{tsv} and {needle} are both set: give the {split}")
    cfg = _cfg(*overrides)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message) as err:  # before: the TSV silently won
        train(cfg, out_dir=out)
    assert "\n" not in str(err.value) and not out.exists()
    with pytest.raises(ConfigError, match=message):  # nmt-prepare's path
        prepare(cfg)


# --- 6e. --n-best and the beam ------------------------------------------------------------


def test_n_best_wider_than_the_beam_searches_with_n_best_and_says_so(ckpts, tmp_path, capsys):
    from nmt.cli import translate
    from nmt.cli.decode_flags import decode_config

    out = tmp_path / "out.txt"
    args = [str(ckpts["good"]), "-i", _input(tmp_path), "-o", str(out), "--n-best", "5"]
    code, _, err = run_main(translate, [*args, "--beam", "2"], capsys)
    assert code == 0, err
    note = "nmt: note: --n-best 5 needs a beam of at least 5: searching with beam 5 (not 2)"
    assert note in err.splitlines()
    summary = [line for line in err.splitlines() if "translated 3 lines" in line]
    assert len(summary) == 1 and ", beam 5, " in summary[0]  # before: "beam 2"
    assert len(out.read_text(encoding="utf-8").splitlines()) == 15
    # The checkpoint's beam (2) is widened the same way, and --quiet silences the note.
    code, _, err = run_main(translate, [*args, "--quiet"], capsys)
    assert code == 0 and err == ""
    dec = decode_config(
        DecodeConfig(beam_size=2),
        translate.parse_args(["x", "--n-best", "5", "--quiet"]),
    )
    assert dec.beam_size == 5 and dec.n_best == 5


def test_n_best_with_greedy_is_refused_and_with_sampling_draws_n(ckpts, tmp_path, capsys):
    from nmt.cli import translate

    inp = _input(tmp_path)
    args = [str(ckpts["good"]), "-i", inp, "--n-best", "3"]
    code, out, err = run_main(translate, [*args, "--greedy"], capsys)  # before: 3 copies of 1
    _one_line_error(code, out, err, "--n-best 3 needs beam search or sampling")
    code, out, err = run_main(translate, [*args, "--sample", "--quiet"], capsys)
    assert code == 0 and len(out.splitlines()) == 9, err


# --- 7. damaged checkpoints in our own words ----------------------------------------------


def test_a_truncated_checkpoint_is_named_with_its_size_and_no_torch_text(ckpts, tmp_path, capsys):
    from nmt.cli import translate
    from nmt.errors import NMTError

    data = ckpts["good"].read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        bad = tmp_path / "cut.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(NMTError) as err:
            load_checkpoint(bad)
        text = str(err.value)
        assert f"checkpoint {bad} ({cut} bytes) is incomplete or corrupt" in text, text
        assert "use another checkpoint" in text and "\n" not in text
        assert not any(t in text for t in TORCH_TEXT), text  # before: torch's text, cut
    code, out, err = run_main(translate, [str(bad), "-i", _input(tmp_path)], capsys)
    line = _one_line_error(code, out, err, "cut.pt", "is incomplete or corrupt")
    assert not any(t in line for t in TORCH_TEXT), line


# --- 13. nmt-average ----------------------------------------------------------------------


@pytest.fixture()
def run_with(ckpts, tmp_path):
    """A run folder with ``n`` step checkpoints (and a best.pt, never averaged)."""

    def make(n: int) -> Path:
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        _checkpoint(folder / "best.pt", ckpts["tok"], step=99)
        for step in range(1, n + 1):
            _checkpoint(folder / f"step_{step:08d}.pt", ckpts["tok"], step=step)
        return folder

    return make


def _average(args: list[str], capsys):
    from nmt.cli import average

    return run_main(average, args, capsys)


def test_average_defaults_to_every_step_checkpoint(run_with, tmp_path, capsys):
    run = run_with(6)
    code, _, err = _average([str(run), "-o", str(tmp_path / "avg.pt")], capsys)
    assert code == 0, err
    assert err.startswith("nmt: averaged 6 checkpoints (step_00000001.pt, ")  # before: 5
    assert len(load_checkpoint(tmp_path / "avg.pt")["averaged_from"]) == 6
    # An earlier average under another name in the run folder is not averaged again.
    code, _, err = _average([str(run), "-o", str(run / "mine.pt")], capsys)
    assert code == 0, err
    code, _, err = _average([str(run), "-o", str(tmp_path / "again.pt")], capsys)
    assert code == 0 and "averaged 6 checkpoints" in err and "mine.pt" not in err, err


def test_average_asking_for_more_than_exist_says_how_many(run_with, tmp_path, capsys):
    run = run_with(2)
    code, _, err = _average([str(run), "-k", "5", "-o", str(tmp_path / "a.pt")], capsys)
    assert code == 0, err
    assert err == (
        "nmt: averaged 2 checkpoints (2 of the 5 asked for exist): step_00000001.pt, "
        f"step_00000002.pt into {tmp_path / 'a.pt'}\n"
    )


def test_average_of_one_checkpoint_needs_k_1(run_with, ckpts, tmp_path, capsys):
    run = run_with(1)
    out = tmp_path / "one.pt"
    for args in ([str(run)], [str(run), "-k", "3"]):  # before: "averaged 1 checkpoints"
        code, stdout, err = _average([*args, "-o", str(out)], capsys)
        _one_line_error(code, stdout, err, "holds one step checkpoint (step_00000001.pt)", "-k 1")
        assert not out.exists()
    code, _, err = _average([str(run), "-k", "1", "-o", str(out)], capsys)
    assert code == 0 and "(-k 1: nothing averaged)" in err, err
    weights = load_checkpoint(run / "step_00000001.pt")["model"]
    assert all(torch.equal(v, weights[k]) for k, v in load_checkpoint(out)["model"].items())
    code, stdout, err = _average(["--inputs", str(ckpts["good"]), "-o", str(out)], capsys)
    _one_line_error(code, stdout, err, "--inputs needs at least two checkpoints")


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write into (root ignores permissions: use /sys then)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_average_into_a_missing_or_read_only_folder_fails_before_loading(
    run_with, tmp_path, capsys, monkeypatch
):
    from nmt.train import checkpoint

    run = run_with(2)
    loaded: list[Path] = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda p, *a: loaded.append(p) or real(p))
    missing = tmp_path / "no_such_folder" / "avg.pt"
    code, out, err = _average([str(run), "-o", str(missing)], capsys)
    _one_line_error(code, out, err, f"-o {missing}", f"{missing.parent} does not exist")
    assert not missing.parent.exists()  # before: created, and the average written there
    read_only = _read_only_folder(tmp_path) / "avg.pt"
    code, out, err = _average([str(run), "-o", str(read_only)], capsys)
    line = _one_line_error(
        code, out, err, f"-o {read_only}", f"cannot write in folder {read_only.parent}"
    )
    assert "train.resume" not in line  # before: CheckpointWriteError's advice on resuming
    code, out, err = _average([str(run), "-o", str(tmp_path)], capsys)
    _one_line_error(code, out, err, f"-o {tmp_path} is a folder")
    assert loaded == []  # refused before any checkpoint was read


# --- 14. numbering, attention plots -------------------------------------------------------


def test_n_best_lines_count_input_lines_from_one(ckpts, tmp_path, capsys):
    from nmt.cli import translate

    inp = _input(tmp_path, [LINES[0], "", LINES[1]])
    args = [str(ckpts["good"]), "-i", inp, "--n-best", "2", "--quiet"]
    code, out, err = run_main(translate, args, capsys)
    assert code == 0, err
    assert [row.split(" ||| ")[0] for row in out.splitlines()] == ["1", "1", "2", "2", "3", "3"]
    assert out.splitlines()[2] == "2 |||  ||| 0.0000"  # the empty line 2
    plots = tmp_path / "plots"
    code, _, err = run_main(translate, [*args, "--attention-plot", str(plots)], capsys)
    assert code == 0 and sorted(p.name for p in plots.iterdir()) == [
        "attention_1.png",
        "attention_3.png",
    ]


def test_attention_plot_of_a_model_without_attention_says_why_nothing_is_written(
    ckpts, tmp_path, capsys
):
    from nmt.cli import translate

    plots = tmp_path / "plots"
    args = [str(ckpts["no_attention"]), "-i", _input(tmp_path), "--attention-plot", str(plots)]
    code, out, err = run_main(translate, args, capsys)
    assert code == 0 and len(out.splitlines()) == 3, err
    notes = [line for line in err.splitlines() if "attention" in line]
    assert notes == [
        f"nmt: note: no attention plots will be written to {plots}: {ckpts['no_attention']} "
        "has no attention (model.attention=none)"
    ]  # before: "nmt: wrote 0 attention plots" after translating
    assert err.index(notes[0]) < err.index("translated 3 lines")
    assert not plots.exists()
    code, out, err = run_main(translate, [*args, "--quiet"], capsys)
    assert code == 0 and err == "" and not plots.exists()
