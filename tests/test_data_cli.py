"""``nmt-prepare`` end to end, as the user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NMT_PREPARE = Path(sys.executable).parent / "nmt-prepare"


def _run(args, tmp_path, **env):
    full_env = {**os.environ, **env}
    full_env.pop("NMT_DATA_MIRROR", None) if "NMT_DATA_MIRROR" not in env else None
    return subprocess.run(
        [str(NMT_PREPARE), *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )


def test_prepare_local_prints_the_summary(tiny_parallel, tmp_path):
    f = tiny_parallel
    args = [
        "data=local",
        f"data.local.train_src={f['train_src']}",
        f"data.local.train_tgt={f['train_tgt']}",
        f"data.local.valid_src={f['valid_src']}",
        f"data.local.valid_tgt={f['valid_tgt']}",
        "tokenizer.vocab_size=400",
    ]
    out = _run(args, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert rows["train"][1] == "400" and rows["val"][1:3] == ["50", "50"]
    assert "vocab: src 400, tgt 400" in out.stdout
    assert not (tmp_path / "run").exists()  # the output is the cache: no run folder is kept


def test_bad_mirror_path_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    # In process (the console script's own main) to save a second interpreter start.
    from nmt.cli.prepare import main

    argv = ["nmt-prepare", "data=multi30k_en_fr", f"data.mirror={tmp_path / 'no_such_mirror'}"]
    monkeypatch.setattr(sys, "argv", [*argv, f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("nmt: error: data mirror folder") and "no_such_mirror" in lines[0]


@pytest.mark.slow
def test_prepare_multi30k_then_reuse(shared_data, tmp_path):
    first = _run(["data=multi30k_en_fr"], tmp_path, NMT_DATA_MIRROR=str(shared_data))
    assert first.returncode == 0, first.stderr
    train = next(line.split() for line in first.stdout.splitlines() if line.startswith("train "))
    assert train[1] == "29000" and int(train[2]) > 28900
    assert "cache written" in first.stdout
    second = _run(["data=multi30k_en_fr"], tmp_path, NMT_DATA_MIRROR=str(shared_data))
    assert second.returncode == 0 and "cache reused" in second.stdout
    assert second.stdout.splitlines()[1:-1] == first.stdout.splitlines()[1:-1]
