"""Run folders: a refused command changes nothing, a failed one leaves nothing, the log says
what happens.

Every ``nmt-train``/``nmt-prepare`` here runs in this process through the entry points'
``main()`` (Hydra included) on a few hundred real Multi30k pairs and a 16-unit model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import one_line_error, run_cli_in_process

TINY = [
    "tokenizer.vocab_size=200",
    "model.emb_dim=16",
    "model.hidden_dim=16",
    "train.max_steps=2",
    "train.max_tokens=400",
    "train.valid_max_sentences=4",
    "decode=greedy",
]


def _data(files: dict[str, Path]) -> list[str]:
    keys = ("train_src", "train_tgt", "valid_src", "valid_tgt")
    return ["data=local", *(f"data.local.{k}={files[k]}" for k in keys)]


def _train(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    from nmt.cli.train import main

    return run_cli_in_process(main, ["nmt-train", *args], monkeypatch, capsys)


def _record(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / ".hydra").iterdir())}


def test_refused_runs_never_rewrite_the_recorded_config(
    tiny_parallel, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    base = [*_data(tiny_parallel), *TINY, f"hydra.run.dir={run}"]
    code, err = _train(base, monkeypatch, capsys)
    assert code == 0, err
    record = _record(run)
    assert set(record) == {"config.yaml", "overrides.yaml"}
    assert b"hidden_dim: 16" in record["config.yaml"]
    assert b"model.hidden_dim=16" in record["overrides.yaml"]
    log = (run / "train.log").read_text(encoding="utf-8")

    # 1. a new run into the folder of a finished one
    one_line_error(
        *_train([*base, "model.hidden_dim=32"], monkeypatch, capsys), "already holds a run"
    )
    # 2. a folder in use by a live process (this one: its pid is alive)
    (run / "train.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname()[1]}))
    one_line_error(*_train([*base, "train.resume=true"], monkeypatch, capsys), "in use by another")
    (run / "train.lock").unlink()
    # 3. a resume whose model shape differs: one line naming the key, old and new value
    line = one_line_error(
        *_train([*base, "train.resume=true", "model.hidden_dim=32", "train.lr=0.002"],
                monkeypatch, capsys),
        "model.hidden_dim 16 -> 32",
        "train.lr 0.001 -> 0.002",
    )  # fmt: skip
    assert "size mismatch" not in line  # before: a 70-line RuntimeError from load_state_dict
    assert _record(run) == record  # before: overwritten by each refused config
    assert (run / "train.log").read_text(encoding="utf-8") == log

    # 4. budgets may change on resume: accepted, logged, and now part of the record
    code, err = _train([*base, "train.resume=true", "train.max_steps=3"], monkeypatch, capsys)
    assert code == 0, err
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "resuming with a changed setting: train.max_steps 2 -> 3" in log
    assert b"max_steps: 3" in (run / ".hydra" / "config.yaml").read_bytes()


def test_failed_and_producing_nothing_commands_leave_no_folder(
    tiny_parallel, tmp_path, monkeypatch, capsys
):
    from nmt.cli.prepare import main as prepare_main

    monkeypatch.chdir(tmp_path)
    data = _data(tiny_parallel)
    # a config mistake: Hydra never gets to make the folder
    one_line_error(*_train([*data, "model.cel=gru"], monkeypatch, capsys), "model.cel")
    # a data mistake found after Hydra made runs/nmt/<time>/: removed again, parents too
    one_line_error(
        *_train([*data, "data.local.train_src=missing.en"], monkeypatch, capsys), "missing.en"
    )
    # a bad value found at the start of training
    one_line_error(*_train([*data, "train.lr=-1"], monkeypatch, capsys), "train.lr")
    # nmt-prepare keeps everything in the cache: no run folder at all
    argv = ["nmt-prepare", *data, "tokenizer.vocab_size=200"]
    code, err = run_cli_in_process(prepare_main, argv, monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # before: runs/nmt/<time>/*.log
    # a run folder given by the user that already existed is never removed
    kept = tmp_path / "mine"
    kept.mkdir()
    _train([*data, "data.local.train_src=missing.en", f"hydra.run.dir={kept}"], monkeypatch, capsys)
    assert kept.is_dir() and not list(kept.iterdir())


def test_progress_is_logged_by_time_and_validation_is_announced(
    tiny_parallel, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    args = [*_data(tiny_parallel), *TINY, f"hydra.run.dir={run}"]
    args += ["train.max_steps=4", "train.log_every=1000", "train.log_seconds=1e-9"]
    code, err = _train(args, monkeypatch, capsys)
    assert code == 0, err
    log = (run / "train.log").read_text(encoding="utf-8")
    steps = [line for line in log.splitlines() if "] - step " in line]
    assert len(steps) >= 3  # before: nothing until step 1000 (log_every)
    assert "validating at step 4: loss on 50 pairs, BLEU/chrF of 4 sentences (greedy)" in log
    assert "validation: 4/4 sentences decoded" in log
    # metrics.jsonl stays step-based: no train record (so it never depends on machine speed)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["valid"]
    assert not (run / "common.log").exists()


def test_word2vec_run_logs_one_summary_line_per_side(tiny_parallel, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = [*_data(tiny_parallel), *TINY, f"hydra.run.dir={run}", "embeddings=word2vec"]
    code, err = _train(args, monkeypatch, capsys)
    assert code == 0, err
    lines = (run / "train.log").read_text(encoding="utf-8").splitlines()
    assert len([x for x in lines if "embeddings.src: word2vec" in x]) == 1
    assert len([x for x in lines if "embeddings.tgt: word2vec" in x]) == 1
    assert not [x for x in lines if "[gensim" in x or "{'" in x]  # lifecycle lines, raw dicts
    assert len([x for x in lines if " parameters" in x]) == 1  # before: two different counts


@pytest.mark.parametrize("prog", ["nmt-train", "nmt-prepare"])
def test_hydra_commands_explain_themselves(prog, monkeypatch, capsys):
    from nmt.cli import prepare, train

    main = {"nmt-train": train.main, "nmt-prepare": prepare.main}[prog]
    monkeypatch.setattr("sys.argv", [prog, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{prog}: ")  # before: "common is powered by Hydra"
    assert "Examples:" in out and f"\n  {prog} " in out
    assert "powered by Hydra" not in out
    assert "model       char_lm, gru, lstm, luong, no_attention, rnn" in out


def test_python_m_nmt_lists_its_commands(monkeypatch, capsys):
    from nmt.__main__ import COMMANDS, main

    monkeypatch.setattr("sys.argv", ["nmt", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0  # before: exit 2 with a bare usage line
    out = capsys.readouterr().out
    for name, (_, what) in COMMANDS.items():
        assert f"  {name}" in out and what in out


@pytest.mark.parametrize(
    "module", ["translate", "score", "evaluate", "average", "generate", "bench"]
)
def test_argparse_commands_show_what_they_do_and_an_example(module, capsys):
    import importlib

    cli = importlib.import_module(f"nmt.cli.{module}")
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out.lower() and f"nmt-{module} " in out.split("xamples:")[1]


def test_prepared_data_stays_usable_without_the_mirror(shared_data, tmp_path, monkeypatch, capsys):
    from nmt.cli.prepare import main
    from nmt.data import download

    monkeypatch.chdir(tmp_path)
    argv = ["nmt-prepare", "data=tinyshakespeare", "model=char_lm", "train=char_lm"]
    monkeypatch.setenv("NMT_DATA_MIRROR", str(shared_data))
    code, err = run_cli_in_process(main, argv, monkeypatch, capsys)
    assert code == 0, err
    cached = Path(os.environ["NMT_CACHE_DIR"]) / "downloads" / "tinyshakespeare" / "input.txt"
    assert cached.read_bytes() == (shared_data / "tinyshakespeare" / "input.txt").read_bytes()

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download although the data was prepared")

    monkeypatch.delenv("NMT_DATA_MIRROR")
    monkeypatch.setattr(download, "_download", no_network)
    code, err = run_cli_in_process(main, argv, monkeypatch, capsys)
    assert code == 0, err  # before: the prepared corpus needed the mirror again
    assert not (tmp_path / "runs").exists()
