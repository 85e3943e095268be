"""The moving average of the weights (train.ema_decay, nmt/train/ema.py)."""

from __future__ import annotations

import pytest
import torch
from test_train_loop import make_cfg
from torch import nn

from nmt.config_checks import check_train
from nmt.errors import ConfigError
from nmt.train import checkpoint as ckpt
from nmt.train.ema import WeightAverage, warmed_decay
from nmt.train.metrics import read_metrics
from nmt.train.run import train


def test_warmed_decay_forgets_fast_early_and_caps_at_decay():
    assert warmed_decay(0.999, 1) == pytest.approx(2 / 11)
    assert warmed_decay(0.999, 80) == pytest.approx(0.9)
    assert warmed_decay(0.999, 100_000) == 0.999
    assert warmed_decay(0.5, 20) == 0.5 and warmed_decay(0.5, 3) == pytest.approx(4 / 13)


def test_average_follows_the_formula_and_copies_buffers():
    torch.manual_seed(0)
    model = nn.BatchNorm1d(3)  # a parameter and running-statistics buffers
    avg = WeightAverage(model, decay=0.6)
    expected = None
    for n in range(1, 6):
        with torch.no_grad():
            model.weight.add_(torch.randn(3))
            model.running_mean.add_(1.0)
        avg.update(model)
        w = model.weight.detach().clone()
        if expected is None:
            expected = w  # the first update copies
        else:
            d = warmed_decay(0.6, n)
            expected = d * expected + (1 - d) * w
        assert torch.allclose(avg.module.weight, expected, atol=1e-6), n
        assert torch.equal(avg.module.running_mean, model.running_mean)  # copied, not averaged
    assert not torch.allclose(avg.module.weight, model.weight)


def test_state_dict_round_trip_continues_the_same_average():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    a = WeightAverage(model, 0.9)
    for _ in range(3):
        with torch.no_grad():
            model.weight.mul_(1.1)
        a.update(model)
    b = WeightAverage(nn.Linear(4, 2), 0.9)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    a.update(model)
    b.update(model)
    assert a.updates == b.updates == 4
    assert torch.equal(a.module.weight, b.module.weight)


def _cfg(tiny_parallel, *extra):
    return make_cfg(tiny_parallel, "train.lr=3e-3", *extra)


def test_training_validates_and_saves_the_average_and_resumes_from_raw_weights(
    tiny_parallel, tmp_path
):
    cfg = _cfg(tiny_parallel, "train.max_steps=12", "train.valid_every=6", "train.ema_decay=0.9")
    train(cfg, out_dir=tmp_path)
    last = ckpt.load_checkpoint(tmp_path / ckpt.LAST)
    step = ckpt.load_checkpoint(tmp_path / "step_00000012.pt")
    assert last["ema"]["updates"] == 12
    averaged = {k.removeprefix("module."): v for k, v in last["ema"]["weights"].items()}
    # Translation checkpoints hold the average; last.pt's "model" stays the raw weights.
    for name, value in step["model"].items():
        assert torch.equal(value, averaged[name]), name
    assert any(not torch.equal(v, last["model"][k]) for k, v in step["model"].items())
    # Validation scored the average: its loss differs from the raw weights' loss.
    plain = tmp_path / "plain"
    train(_cfg(tiny_parallel, "train.max_steps=12", "train.valid_every=6"), out_dir=plain)
    losses = [
        [r["loss"] for r in read_metrics(d / "metrics.jsonl") if r["split"] == "valid"]
        for d in (tmp_path, plain)
    ]
    assert len(losses[0]) == len(losses[1]) == 2
    assert losses[0] != losses[1]
    raw = ckpt.load_checkpoint(plain / ckpt.LAST)["model"]
    for name, value in raw.items():  # the average does not change the training itself
        assert torch.equal(value, last["model"][name]), name


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ema_decay_out_of_range_is_refused(bad, tiny_parallel):
    cfg = _cfg(tiny_parallel, f"train.ema_decay={bad}")
    with pytest.raises(ConfigError, match="train.ema_decay"):
        check_train(cfg.train)
