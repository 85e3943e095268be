"""nmt-gpu-check without a GPU: its one line, its options, the order of its phases (with
stub phases) and the pieces that read and report results.

The phases themselves need CUDA (``make gpu-check``); here CUDA is hidden or the phases are
stubs, so the same tests hold on a GPU machine.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_main

from nmt import gpu_check
from nmt.cli import gpu_check as cli
from nmt.errors import NMTError
from nmt.gpu_check import CheckPlan, commands, compose_recipe, junit_counts, summarize_metrics
from nmt.profiling import op_time_summary


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (None, "is a CPU build: install a CUDA build of torch first, then `make install"),
        ("12.8", "no CUDA GPU is visible (torch"),
    ],
)
def test_without_cuda_one_line_exit_0_nothing_written(
    build, says, no_cuda, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(torch.version, "cuda", build)
    out = tmp_path / "gpu_check.json"
    code, stdout, stderr = run_main(cli, ["--out", str(out), "--minutes", "1"], capsys)
    assert code == 0 and stderr == ""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nmt-gpu-check: ") and says in lines[0]
    assert "nothing measured" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_python_m_nmt_gpu_check_without_cuda_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nmt", "gpu-check", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # this torch's own build decides which of the two lines it is
    says = "is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
    assert proc.stdout.count("\n") == 1 and says in proc.stdout
    assert not out.exists()


def test_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "nmt-gpu-check --minutes 1" in out and "CUDA" in out


def test_bad_options_are_one_sentence():
    with pytest.raises(NMTError, match="--minutes must be positive"):
        cli.plan_of(cli.parse_args(["--minutes", "0"]))
    plan = cli.plan_of(cli.parse_args(["--skip-tests", "--max-tokens", "9000", "train.lr=1e-3"]))
    assert not plan.tests and plan.max_tokens == 9000 and plan.overrides == ["train.lr=1e-3"]


@pytest.mark.parametrize("option", ["--decode-batch", "--max-tokens", "--profile-steps"])
def test_a_bad_option_fails_before_the_cuda_check(option, no_cuda, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    code, stdout, stderr = run_main(cli, ["--out", str(out), option, "0"], capsys)
    assert code == 2 and stdout == ""
    assert stderr == f"nmt: error: {option} must be at least 1 (got 0)\n"
    assert not out.exists()


# What each phase returns, in the shape the summary table reads.
STUB_RESULTS = {
    "tests": {
        "passed": 1,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "failing": [],
        "seconds": 0.1,
        "returncode": 0,
    },
    "prepare": {"seconds": 0.1},
    "profile": {
        "ms_per_step": 1.0,
        "tgt_tok_s": 1,
        "tgt_tokens_per_update": 1,
        "time_split": {"host_ms_per_step": 1.0, "device_ms_per_step": 1.0, "top_ops": []},
    },
    "train": {
        "steps": 1,
        "epochs": 1,
        "tgt_tok_s": 1,
        "peak_cuda_mib": 1,
        "best_valid_bleu": 1.0,
        "valid_bleu": [1.0],
    },
    "decode": {"split": "test", "sentences": 1, "sent_s": 1.0, "bleu": 1.0, "chrf": 1.0},
}


def stub_phases(out: Path, failing: str | None) -> tuple[list, dict[str, list[str]]]:
    """The check's phase table with stubs (no CUDA, no data): each stub notes the phases
    already in the JSON on disk when it starts, and ``failing`` raises."""
    seen: dict[str, list[str]] = {}

    def stub(name: str):
        def phase(plan: CheckPlan) -> dict:
            on_disk = json.loads(out.read_text()) if out.exists() else {}
            seen[name] = [p for p, _, _ in gpu_check.PHASES if p in on_disk]
            if name == failing:
                raise NMTError(f"{name} broke")
            return copy.deepcopy(STUB_RESULTS[name])

        return phase

    table = [(name, stub(name), needs) for name, _, needs in gpu_check.PHASES]
    return table, seen


@pytest.mark.parametrize(
    ("failing", "not_run"),
    [("prepare", ["profile", "train", "decode"]), ("train", ["decode"]), (None, [])],
)
def test_run_check_skips_what_a_failed_phase_feeds(failing, not_run, monkeypatch, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    table, seen = stub_phases(out, failing)
    monkeypatch.setattr(gpu_check, "PHASES", table)
    monkeypatch.setattr(cli, "cuda_missing", lambda: None)
    env = {"device": "stub", "capability": "0.0", "memory_gib": 0, "torch": "x", "cuda": "x"}
    monkeypatch.setattr(gpu_check, "environment", lambda: {**env, "cudnn": 0})
    writes: list[list[str]] = []  # the phases in the JSON at each write

    def write(path, data: bytes) -> None:
        writes.append([p for p, _, _ in table if p in json.loads(data)])
        path.write_bytes(data)

    monkeypatch.setattr(cli, "write_atomic", write)
    args = ["--out", str(out), "--precision", "fp32", "--run-dir", str(tmp_path / "run")]
    code, stdout, _ = run_main(cli, args, capsys)

    names = [p for p, _, _ in table]
    # written after every phase, run or not, and once more at the end
    assert writes == [names[: i + 1] for i in range(len(names))] + [names]
    ran = [p for p in names if p not in not_run]
    assert list(seen) == ran and all(seen[p] == names[: names.index(p)] for p in ran)
    result = json.loads(out.read_text())
    assert result["complete"] and result["ok"] is (failing is None) and code == int(bool(failing))
    assert [p for p in names if "not_run" in result[p]] == not_run
    if failing:
        assert result[failing] == {"error": f"NMTError: {failing} broke"}
        assert result["decode"]["not_run"].startswith("the train phase ")
        assert f"| {failing} | NMTError: {failing} broke |" in stdout


def test_the_recipe_composes_as_the_check_trains_it():
    plan = CheckPlan(minutes=2, max_tokens=16000, overrides=["train.lr=1e-3"])
    cfg = compose_recipe(plan.train_overrides())
    tc = cfg.train
    assert (tc.device, tc.precision, tc.max_minutes, tc.max_tokens) == ("cuda", "bf16", 2.0, 16000)
    assert tc.lr == 1e-3 and tc.keep_last == 0  # the user's overrides come last
    assert cfg.model.emb_dim == 512 and cfg.data.name == "multi30k_en_fr"  # the recipe's shape
    cmds = commands(plan)
    assert (
        "train.precision=bf16" in cmds["train"] and "--config-name multi30k_en_fr" in cmds["train"]
    )
    assert cmds["prepare"].endswith("train.lr=1e-3")


def test_junit_counts(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="7">'
        '<testcase classname="tests.test_cuda" name="test_a"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_cuda" name="test_b"><error message="y"/></testcase>'
        '<testcase classname="tests.test_cuda" name="test_c"/>'
        "</testsuite></testsuites>"
    )
    counts = junit_counts(xml)
    assert counts == {
        "passed": 3,
        "failed": 1,
        "errors": 1,
        "skipped": 2,
        "failing": ["tests.test_cuda::test_a", "tests.test_cuda::test_b"],
    }


def test_summarize_metrics_leaves_the_warm_up_interval_out():
    records = [
        {"split": "train", "step": 50, "epoch": 1, "tgt_tok_s": 10.0},
        {"split": "train", "step": 100, "epoch": 1, "tgt_tok_s": 100.0},
        {"split": "valid", "step": 120, "epoch": 1, "bleu": 20.123, "valid_seconds": 2.5},
        {"split": "train", "step": 150, "epoch": 2, "tgt_tok_s": 120.0},
        {"split": "train", "step": 200, "epoch": 2, "tgt_tok_s": 110.0},
        {"split": "valid", "step": 240, "epoch": 2, "bleu": 25.0, "valid_seconds": 2.0},
    ]
    got = summarize_metrics(records)
    assert got == {
        "tgt_tok_s": 110,
        "intervals": 3,
        "steps": 240,
        "epochs": 2,
        "valid_bleu": [20.12, 25.0],
        "valid_seconds": 4.5,
    }
    assert summarize_metrics([])["tgt_tok_s"] is None


def test_format_summary_shows_every_phase():
    result = {
        "ok": False,
        "environment": {
            "device": "GPU X",
            "capability": "9.0",
            "memory_gib": 80.0,
            "torch": "2.x",
            "cuda": "12.8",
            "cudnn": 91000,
        },
        "plan": {"minutes": 3.0, "precision": "bf16", "max_tokens": 12000},
        "tests": {
            "passed": 7,
            "failed": 1,
            "errors": 0,
            "skipped": 0,
            "seconds": 9.0,
            "failing": ["tests/test_cuda.py::test_x"],
        },  # fmt: skip
        "prepare": {"seconds": 12.0},
        "profile": {
            "ms_per_step": 30.5,
            "tgt_tok_s": 200000,
            "tgt_tokens_per_update": 6000,
            "time_split": {
                "host_ms_per_step": 20.0,
                "device_ms_per_step": 25.0,
                "top_ops": [{"name": "aten::mm", "device_ms_per_step": 5.0}],
            },
        },
        "train": {"error": "NMTError: something"},
        "decode": {"not_run": "the train phase failed"},
    }
    text = cli.format_summary(result)
    assert "GPU X" in text and "7 passed, 1 failed" in text and "FAILED tests/test_cuda.py" in text
    assert "200,000 tgt tok/s" in text and "aten::mm 5.0 ms" in text
    assert "| train | NMTError: something |" in text
    assert "| decode | not run (the train phase failed) |" in text and text.endswith("ok: false")


def test_op_time_summary_on_the_cpu():
    layer = torch.nn.Linear(8, 8)

    def step(x):
        layer(x).sum().backward()

    split = op_time_summary(step, [torch.randn(4, 8) for _ in range(2)], cuda=False, top=3)
    assert split["steps"] == 2 and split["device_ms_per_step"] == 0.0
    assert split["host_ms_per_step"] > 0 and len(split["top_ops"]) == 3
    top = split["top_ops"]
    assert top[0]["host_ms_per_step"] >= top[-1]["host_ms_per_step"]
    assert {"name", "calls_per_step", "host_ms_per_step", "device_ms_per_step"} == top[0].keys()
