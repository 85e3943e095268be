"""Outputs are never lost or half-written, and unusable destinations fail before any work.

`nmt-translate -o` that names the input is refused (the input used to be replaced by its
translation); every output goes through a temporary file renamed at the end; a missing or
read-only folder is one line before the checkpoint is even read.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import make_checkpoint, one_line_error, run_cli_in_process

LINES = ["A man in an orange hat.", "Two dogs run on the grass.", "A girl is eating."]


@pytest.fixture(scope="module")
def ckpt(tiny_tokenizer, tmp_path_factory) -> Path:
    tok = tiny_tokenizer
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", tok, tok)


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder this process cannot create files in: chmod 555 for a normal user; for root
    (CI), which ignores permissions, sysfs, which refuses new files to everyone."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder refuses writes")
    yield Path("/sys/kernel")


def _translate(args: list[str], capsys) -> tuple[int, str]:
    from nmt.cli import translate

    try:
        translate.main(args)
    except SystemExit as err:
        return int(err.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(x + "\n" for x in LINES), encoding="utf-8")
    return path


@pytest.mark.parametrize("spelling", ["same path", "symlink", "other spelling", "hard link"])
def test_output_that_is_the_input_is_refused_and_the_input_kept(spelling, ckpt, tmp_path, capsys):
    source = _source(tmp_path)
    before = source.read_bytes()
    output = {
        "same path": source,
        "symlink": tmp_path / "link.txt",
        "other spelling": tmp_path / "sub" / ".." / "in.txt",
        "hard link": tmp_path / "hard.txt",
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(source)
    if spelling == "hard link":
        os.link(source, output)
    (tmp_path / "sub").mkdir()
    code, err = _translate([str(ckpt), "-i", str(source), "-o", str(output), "--quiet"], capsys)
    one_line_error(code, err, "is the input file", "choose another output file")
    assert source.read_bytes() == before  # before: replaced by its own translation


def test_a_failed_write_keeps_the_previous_output_and_leaves_no_temporary(
    ckpt, tmp_path, capsys, monkeypatch
):
    source, output = _source(tmp_path), tmp_path / "out.txt"
    output.write_text("the previous translation\n", encoding="utf-8")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the disk fills while the output is written
    code, err = _translate([str(ckpt), "-i", str(source), "-o", str(output), "--quiet"], capsys)
    one_line_error(code, err, "cannot write output file", str(output), "No space left")
    assert output.read_text(encoding="utf-8") == "the previous translation\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]
    monkeypatch.undo()
    code, err = _translate([str(ckpt), "-i", str(source), "-o", str(output), "--quiet"], capsys)
    assert code == 0, err
    assert len(output.read_text(encoding="utf-8").splitlines()) == len(LINES)


def test_nbest_and_attention_plots_are_written_whole(ckpt, tmp_path, capsys):
    source = _source(tmp_path)
    plots = tmp_path / "plots"
    args = [str(ckpt), "-i", str(source), "-o", str(tmp_path / "nbest.txt"), "--n-best", "2"]
    code, err = _translate([*args, "--attention-plot", str(plots), "--quiet"], capsys)
    assert code == 0, err
    assert len((tmp_path / "nbest.txt").read_text(encoding="utf-8").splitlines()) == 2 * len(LINES)
    assert sorted(p.name for p in plots.iterdir()) == [f"attention_{i}.png" for i in (1, 2, 3)]
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_no_progress_bar_in_redirected_stderr(ckpt, tmp_path, capsys):
    source = _source(tmp_path)
    code, err = _translate([str(ckpt), "-i", str(source), "-o", str(tmp_path / "o.txt")], capsys)
    assert code == 0, err
    assert "\r" not in err  # before: tqdm's carriage-return frames in the log file
    assert err.startswith("nmt: translated 3 lines in ")


@pytest.mark.parametrize(
    "case", ["missing folder", "read-only folder", "a folder as the file", "plot dir is a file"]
)
def test_translate_destinations_fail_before_the_checkpoint_is_read(
    case, tmp_path, unwritable, capsys
):
    source = _source(tmp_path)
    (tmp_path / "a_file.txt").write_text("x\n", encoding="utf-8")
    option, value, needle = {
        "missing folder": ("-o", tmp_path / "nope" / "out.txt", "does not exist"),
        "read-only folder": ("-o", unwritable / "out.txt", "cannot write in folder"),
        "a folder as the file": ("-o", tmp_path, "is a folder"),
        "plot dir is a file": ("--attention-plot", tmp_path / "a_file.txt", "is a file"),
    }[case]
    # The checkpoint does not exist: the destination must be checked before it is looked at.
    missing_ckpt = str(tmp_path / "not_trained_yet.pt")
    code, err = _translate([missing_ckpt, "-i", str(source), option, str(value)], capsys)
    one_line_error(code, err, needle, option, str(value))


def test_attention_plots_into_a_read_only_folder(ckpt, tmp_path, unwritable, capsys):
    source = _source(tmp_path)
    args = [str(ckpt), "-i", str(source), "--attention-plot", str(unwritable / "plots")]
    one_line_error(*_translate(args, capsys), "--attention-plot", "cannot write in folder")


@pytest.mark.parametrize("case", ["read-only", "a file"])
def test_evaluate_out_folder_fails_before_the_checkpoint_is_read(
    case, tmp_path, unwritable, capsys
):
    from nmt.cli import evaluate

    (tmp_path / "a_file").write_text("x\n", encoding="utf-8")
    out = unwritable / "eval" if case == "read-only" else tmp_path / "a_file"
    try:
        evaluate.main([str(tmp_path / "no_run.pt"), "--out", str(out)])
        code = 0
    except SystemExit as err:
        code = int(err.code or 0)
    one_line_error(code, capsys.readouterr().err, "--out")


def test_train_into_an_unwritable_run_folder_is_one_line(
    tiny_parallel, tmp_path, unwritable, monkeypatch, capsys
):
    from nmt.cli.train import main

    f = tiny_parallel
    monkeypatch.chdir(tmp_path)
    argv = [
        "nmt-train",
        "data=local",
        f"data.local.train_src={f['train_src']}",
        f"data.local.train_tgt={f['train_tgt']}",
        f"data.local.valid_src={f['valid_src']}",
        f"data.local.valid_tgt={f['valid_tgt']}",
        f"hydra.run.dir={unwritable}/run",
    ]
    code, err = run_cli_in_process(main, argv, monkeypatch, capsys)
    one_line_error(code, err, "hydra.run.dir", "cannot write in folder")
    assert not (unwritable / "run").exists()
