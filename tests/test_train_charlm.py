"""Character LM training: truncated BPTT on tiny Shakespeare with a tiny LSTM."""

from __future__ import annotations

import math

from hydra import compose, initialize_config_dir

from nmt import inference
from nmt.config import conf_dir, register_configs
from nmt.train import checkpoint as ckpt
from nmt.train.metrics import read_metrics
from nmt.train.run import train


def test_char_lm_trains_validates_in_bits_and_samples(shared_data, tmp_path):
    register_configs()
    overrides = [
        "data=tinyshakespeare",
        f"data.mirror={shared_data}",
        "model=char_lm",
        "train=char_lm",
        "model.layers=1",
        "model.emb_dim=8",
        "model.hidden_dim=32",
        "train.char_lm.bptt_len=16",
        "train.char_lm.batch_size=4",
        "train.max_steps=40",
        "train.valid_every=20",
        "train.log_every=10",
        "train.lr=1e-2",
        "train.threads=1",
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    best = train(cfg, out_dir=tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [20, 40]
    assert best == min(r["loss"] for r in valid) < math.log(67)  # better than uniform
    assert valid[-1]["bits_per_char"] == valid[-1]["loss"] / math.log(2)
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0]
    sample = (tmp_path / "sample.txt").read_text(encoding="utf-8")
    assert len(sample) > 500
    model, vocab, _, loaded = inference.load_for_inference(tmp_path)
    assert loaded.model.arch == "char_lm" and vocab.size == 67
    last = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert last["task_state"]["state"] is not None  # the carried BPTT state, for exact resume
