"""The training loop end to end on a tiny real Multi30k slice (tiny model, vocab 200).

Every run uses one CPU thread so runs are bit-for-bit reproducible and the machine's two
cores are not oversubscribed.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from hydra import compose, initialize_config_dir

from nmt import inference
from nmt.config import conf_dir, register_configs
from nmt.errors import NMTError
from nmt.train import checkpoint as ckpt
from nmt.train.metrics import read_metrics
from nmt.train.run import train
from nmt.train.runfolder import LOCK_NAME

TINY = [
    "tokenizer.vocab_size=200",
    "model.emb_dim=16",
    "model.hidden_dim=32",
    "model.dropout=0.0",
    "train.threads=1",
    "train.max_tokens=600",
    "train.log_every=5",
    "train.valid_max_sentences=4",
    "train.keep_last=1",
    "decode=greedy",
    "decode.max_len_a=0.0",
    "decode.max_len_b=12",
]


def overrides(tiny_parallel, *extra: str) -> list[str]:
    p = tiny_parallel
    return [
        "data=local",
        f"data.local.train_src={p['train_src']}",
        f"data.local.train_tgt={p['train_tgt']}",
        f"data.local.valid_src={p['valid_src']}",
        f"data.local.valid_tgt={p['valid_tgt']}",
        "data.test_splits=[]",
        *TINY,
        *extra,
    ]


def make_cfg(tiny_parallel, *extra: str):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=overrides(tiny_parallel, *extra))


def test_loss_goes_down_and_run_folder_is_complete(tiny_parallel, tmp_path):
    cfg = make_cfg(tiny_parallel, "train.max_steps=30", "train.lr=3e-3", "train.valid_every=15")
    best = train(cfg, out_dir=tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.3
    norms = [r["grad_norm"] for r in records if r["split"] == "train"]
    assert all(math.isfinite(n) and n > 0 for n in norms) and len(set(norms)) == 6
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [15, 29, 30]  # every 15 steps, epoch end, the end
    assert [r["epoch"] for r in valid] == [1, 1, 2]  # the end of epoch 1 is still epoch 1
    assert all({"loss", "ppl", "bleu", "chrf"} <= r.keys() for r in valid)
    assert best == max(r["bleu"] for r in valid)
    for name in ("best.pt", "last.pt", "curves.png", "step_00000030.pt"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "step_00000029.pt").exists()  # keep_last=1
    assert not (tmp_path / LOCK_NAME).exists()
    last = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert last["step"] == 30 and {"optimizer", "rng", "scheduler", "batch_in_epoch"} <= last.keys()
    model, src_tok, tgt_tok, loaded_cfg = inference.load_for_inference(tmp_path)
    assert loaded_cfg.model.hidden_dim == 32 and src_tok.vocab_size == 200
    assert not model.training


class _Task:
    """The parts of a task that Trainer.train_step uses, over one pre-padded batch."""

    higher_is_better = True

    def __init__(self, model, batch) -> None:
        from nmt.train.loss import Seq2SeqObjective

        self.model, self.batch = model, batch
        self.objective = Seq2SeqObjective(model, 0.1)

    def batches_per_epoch(self) -> int:
        return 1

    def n_tokens(self, rows) -> int:
        return int((self.batch.tgt_out[rows] != 0).sum())

    def forward(self, objective, rows):
        b = self.batch
        return objective(b.src[rows], b.src_lengths[rows], b.tgt_in[rows], b.tgt_out[rows])


def test_gradient_accumulation_equals_one_big_batch(tiny_parallel, tmp_path):
    from nmt.data.batching import PackedSplit, collate
    from nmt.data.prepare import prepare
    from nmt.models.builder import build_model
    from nmt.train.distributed import DistInfo
    from nmt.train.runfolder import StopSignal
    from nmt.train.trainer import Trainer

    cfg = make_cfg(tiny_parallel, "train.optimizer=sgd", "train.momentum=0.0", "train.lr=1.0")
    data = prepare(cfg)
    batch = collate(PackedSplit.of(data.splits["train"]), list(range(8)))
    torch.manual_seed(0)
    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size)
    results = []
    for items in ([slice(0, 4), slice(4, 8)], [slice(0, 8)]):
        task = _Task(copy.deepcopy(model), batch)
        trainer = Trainer(cfg, task, tmp_path, DistInfo(), torch.device("cpu"), StopSignal())
        trainer.train_step(items)
        results.append(task.model.state_dict())
    for name, value in results[0].items():
        assert torch.allclose(value, results[1][name], atol=1e-6, rtol=0), name
    changed = any(not torch.equal(v, model.state_dict()[k]) for k, v in results[0].items())
    assert changed


KILL_AT = 10


def _child_code(argv: list[str]) -> str:
    return textwrap.dedent(
        f"""
        import os, sys
        from nmt.train.trainer import Trainer
        original = Trainer.validate_and_save
        def validate_then_die(self):
            original(self)
            if self.step == {KILL_AT}:
                os.kill(os.getpid(), 9)  # SIGKILL right after the checkpoint, mid-epoch
        Trainer.validate_and_save = validate_then_die
        sys.argv = {["nmt-train", *argv]!r}
        from nmt.cli.train import main
        main()
        """
    )


def train_killed_at_kill_step(tiny_parallel, extra: list[str], out) -> None:
    """Train into ``out`` in a child process that SIGKILLs itself right after the checkpoint
    of step :data:`KILL_AT` (mid-epoch), and check that it died there."""
    argv = overrides(tiny_parallel, *extra, f"hydra.run.dir={out}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _child_code(argv)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert ckpt.load_checkpoint(out / "last.pt")["step"] == KILL_AT


@pytest.mark.parametrize("ema", ["train.ema_decay=0.0", "train.ema_decay=0.9"])
def test_kill_and_resume_reproduces_the_uninterrupted_run(ema, tiny_parallel, tmp_path):
    extra = ["train.max_steps=20", "train.valid_every=5", "model.dropout=0.1", "train.lr=3e-3", ema]
    full = tmp_path / "full"
    train(make_cfg(tiny_parallel, *extra), out_dir=full)

    killed = tmp_path / "killed"
    train_killed_at_kill_step(tiny_parallel, extra, killed)
    assert (killed / LOCK_NAME).exists()  # stale lock of the dead process

    # Without resume the folder is refused; with resume it continues (taking the stale lock).
    with pytest.raises(NMTError, match="train.resume=true"):
        train(make_cfg(tiny_parallel, *extra), out_dir=killed)
    train(make_cfg(tiny_parallel, *extra, "train.resume=true"), out_dir=killed)

    a = ckpt.load_checkpoint(full / "last.pt")
    b = ckpt.load_checkpoint(killed / "last.pt")
    assert a["step"] == b["step"] == 20
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    if ema.endswith("0.9"):  # the weight average resumes too: same average, same count
        assert a["ema"]["updates"] == b["ema"]["updates"] == 20
        for name, value in a["ema"]["weights"].items():
            assert torch.equal(value, b["ema"]["weights"][name]), name
    else:
        assert "ema" not in a
    loss = {
        r["step"]: r["loss"] for r in read_metrics(full / "metrics.jsonl") if r["split"] == "train"
    }
    loss2 = {
        r["step"]: r["loss"]
        for r in read_metrics(killed / "metrics.jsonl")
        if r["split"] == "train"
    }
    assert loss == loss2


def test_early_stopping_stops(tiny_parallel, tmp_path):
    cfg = make_cfg(
        tiny_parallel,
        "train.lr=0.0",  # nothing improves
        "train.valid_every=2",
        "train.valid_metric=loss",
        "train.patience=2",
        "train.max_steps=50",
    )
    train(cfg, out_dir=tmp_path)
    valid = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "valid"]
    assert valid == [2, 4, 6]
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["step"] == 6


def test_bf16_autocast_step_on_cpu_follows_fp32(tiny_parallel, tmp_path):
    """bf16 autocast trains the same run as fp32 to bf16's precision (8 bits of mantissa:
    about 1 % per loss), and really runs in bf16 (the losses are not bit-identical)."""
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        extra = ("train.max_steps=3", "train.log_every=1")
        train(make_cfg(tiny_parallel, f"train.precision={precision}", *extra), out_dir=out)
        records = read_metrics(out / "metrics.jsonl")
        losses[precision] = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses["bf16"]) == 3
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    assert losses["bf16"] != losses["fp32"]


def test_lock_refuses_a_second_run(tiny_parallel, tmp_path):
    (tmp_path / LOCK_NAME).write_text(
        f'{{"pid": {os.getppid()}, "host": "{socket.gethostname()}"}}'
    )
    with pytest.raises(NMTError, match="in use by another nmt-train"):
        train(make_cfg(tiny_parallel, "train.max_steps=1"), out_dir=tmp_path)


def test_nan_loss_stops_naming_the_step(tiny_parallel, tmp_path, monkeypatch):
    from nmt.train import loss as loss_mod

    real = loss_mod.linear_cross_entropy
    calls = {"n": 0}

    def poisoned(x, weight, bias, targets, label_smoothing=0.0):
        loss, nll = real(x, weight, bias, targets, label_smoothing)
        if x.requires_grad:
            calls["n"] += 1
            if calls["n"] == 3:
                return loss * float("nan"), nll
        return loss, nll

    monkeypatch.setattr(loss_mod, "linear_cross_entropy", poisoned)
    cfg = make_cfg(tiny_parallel, "train.max_steps=10", "train.valid_every=2")
    with pytest.raises(NMTError, match="NaN/inf at step 3"):
        train(cfg, out_dir=tmp_path)
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["step"] == 2  # the last good one


def test_sigterm_saves_at_the_next_step_and_time_budget_stops(tiny_parallel, tmp_path, monkeypatch):
    import signal

    from nmt.train.trainer import Trainer

    real_step = Trainer.train_step

    def step_then_signal(self, items):
        real_step(self, items)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler preempting the job would

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    train(make_cfg(tiny_parallel, "train.max_steps=10"), out_dir=tmp_path / "sig")
    assert ckpt.load_checkpoint(tmp_path / "sig" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.undo()

    train(make_cfg(tiny_parallel, "train.max_minutes=0.0001"), out_dir=tmp_path / "budget")
    records = read_metrics(tmp_path / "budget" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "valid"] == [1]  # validated once at the end
    assert (tmp_path / "budget" / "best.pt").is_file()


DDP_SCRIPT = """
import sys, torch
from hydra import compose, initialize_config_dir
from nmt.config import conf_dir, register_configs
from nmt.train import trainer as T
from nmt.train.run import train
out, dump, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
register_configs()
with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
    cfg = compose("config", overrides=overrides)
finish = T.Trainer._finish
def keep_weights(self):
    torch.save(self.model.state_dict(), f"{dump}/rank{self.info.rank}.pt")
    return finish(self)
T.Trainer._finish = keep_weights
rank = int(__import__("os").environ["RANK"])
train(cfg, out_dir=f"{out}/rank{rank}")
"""


@pytest.mark.slow  # ~30 s: two processes each import torch and prepare the data
def test_ddp_two_gloo_processes_agree_and_only_rank0_writes(tiny_parallel, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    argv = overrides(tiny_parallel, "train.max_steps=4", "train.log_every=2", "model.dropout=0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), str(tmp_path / "out"), str(tmp_path), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    for name, value in w0.items():
        assert torch.equal(value, w1[name]), name
    assert (tmp_path / "out" / "rank0" / "last.pt").is_file()
    assert not (tmp_path / "out" / "rank1").exists()  # rank 1 wrote nothing
    assert ckpt.load_checkpoint(tmp_path / "out" / "rank0" / "last.pt")["step"] == 4


@pytest.mark.slow  # two runs through the console script (~20 s)
def test_cli_multirun_gives_each_job_its_own_folder(tiny_parallel, tmp_path):
    argv = overrides(tiny_parallel, "train.max_steps=2", "train.valid_max_sentences=2")
    argv += [f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${hydra.job.num}"]
    cmd = [sys.executable, "-m", "nmt", "train", "-m", "model.cell=gru,lstm", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = [
        ckpt.load_checkpoint(tmp_path / job / "last.pt")["config"]["model"]["cell"] for job in "01"
    ]
    assert cells == ["gru", "lstm"]


def test_cli_reports_user_errors_in_one_line(tiny_parallel, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    argv = overrides(tiny_parallel, f"hydra.run.dir={tmp_path}")
    proc = subprocess.run(
        [sys.executable, "-m", "nmt", "train", *argv], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("nmt: error: run folder")
    assert "Traceback" not in proc.stderr
