"""Training building blocks that need no data or model: loss, schedules, metrics, plots."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from nmt.config import PAD_ID, TrainConfig
from nmt.errors import ConfigError
from nmt.train.loss import LMObjective, Seq2SeqObjective
from nmt.train.metrics import Interval, MetricsWriter, read_metrics
from nmt.train.optim import LRSchedule, build_optimizer
from nmt.train.plots import plot_curves


class FakeSeq2Seq(nn.Module):
    """features() returns fixed hidden states; logits() is a linear layer."""

    def __init__(self, hidden: torch.Tensor, vocab: int) -> None:
        super().__init__()
        self.hidden = nn.Parameter(hidden.clone())
        self.out = nn.Linear(hidden.size(-1), vocab)

    def features(self, src, src_lengths, tgt_in):
        return self.hidden, None

    def output_projection(self, h):
        return h, self.out.weight, self.out.bias


def _hand_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> float:
    total = 0.0
    for row, y in zip(logits.tolist(), targets.tolist()):
        if y == PAD_ID:
            continue
        log_z = math.log(sum(math.exp(v) for v in row))
        logp = [v - log_z for v in row]
        total += -(1 - eps) * logp[y] - eps / len(row) * sum(logp)
    return total


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_loss_matches_hand_computation(eps):
    torch.manual_seed(0)
    vocab, hidden = 7, torch.randn(2, 4, 5)
    model = FakeSeq2Seq(hidden, vocab)
    tgt_out = torch.tensor([[4, 5, 3, PAD_ID], [6, 3, PAD_ID, PAD_ID]])
    loss, nll = Seq2SeqObjective(model, eps)(None, None, None, tgt_out)
    logits = model.out(hidden).reshape(-1, vocab)
    assert loss.item() == pytest.approx(_hand_loss(logits, tgt_out.reshape(-1), eps), rel=1e-5)
    assert nll.item() == pytest.approx(_hand_loss(logits, tgt_out.reshape(-1), 0.0), rel=1e-5)
    assert not nll.requires_grad and loss.requires_grad


def test_padding_positions_get_no_gradient_and_no_loss():
    torch.manual_seed(0)
    model = FakeSeq2Seq(torch.randn(1, 3, 4), 6)
    tgt_out = torch.tensor([[4, 3, PAD_ID]])
    loss, _ = Seq2SeqObjective(model, 0.1)(None, None, None, tgt_out)
    loss.backward()
    assert model.hidden.grad[0, 2].abs().sum() == 0
    assert model.hidden.grad[0, :2].abs().sum() > 0


def test_lm_objective_matches_cross_entropy():
    class FakeLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 5)

        def forward(self, x, state=None):
            return torch.log_softmax(self.emb(x), -1), state

    torch.manual_seed(0)
    lm = FakeLM()
    x, y = torch.randint(0, 5, (2, 6)), torch.randint(0, 5, (2, 6))
    loss, nll, _ = LMObjective(lm, 0.2)(x, y)
    logits = lm.emb(x).reshape(-1, 5)
    ref = nn.functional.cross_entropy(logits, y.reshape(-1), label_smoothing=0.2, reduction="sum")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert nll.item() == pytest.approx(
        nn.functional.cross_entropy(logits, y.reshape(-1), reduction="sum").item(), rel=1e-5
    )


def _schedule(**kw) -> LRSchedule:
    cfg = TrainConfig(**kw)
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], cfg)
    return LRSchedule(opt, cfg, total_steps=100)


def test_schedules():
    inv = _schedule(schedule="inverse_sqrt", lr=1.0, warmup_steps=4)
    assert inv.lr == pytest.approx(0.25)  # step 0 of a 4-step warmup
    for _ in range(16):
        inv.step()
    assert inv.lr == pytest.approx(math.sqrt(4 / 16))
    cos = _schedule(schedule="cosine", lr=1.0, min_lr=0.0)
    for _ in range(50):
        cos.step()
    assert cos.lr == pytest.approx(0.5)
    for _ in range(60):
        cos.step()
    assert cos.lr == pytest.approx(0.0, abs=1e-9)
    const = _schedule(schedule="constant", lr=0.3)
    const.step()
    assert const.lr == pytest.approx(0.3)


def test_cosine_decays_over_whichever_budget_ends_first():
    cos = _schedule(schedule="cosine", lr=1.0, min_lr=0.0, decay_by_time=True, max_minutes=1.0)
    for _ in range(10):  # 10 % of the steps ...
        cos.step()
    cos.set_time_progress(0.5)  # ... but half of the time: the time budget leads
    assert cos.lr == pytest.approx(0.5)
    cos.set_time_progress(0.05)  # steps lead again
    assert cos.lr == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    cos.set_time_progress(0.999)
    other = _schedule(schedule="cosine", lr=1.0, min_lr=0.0)
    other.load_state_dict(cos.state_dict())  # a resumed run continues from the same point
    assert other.lr == pytest.approx(cos.lr) and cos.lr < 1e-4


def test_plateau_halves_after_patience_and_round_trips():
    sch = _schedule(schedule="plateau", lr=1.0, plateau_patience=2, plateau_factor=0.5, min_lr=0.1)
    for metric in [10.0, 11.0, 9.0, 10.5]:  # better, better, worse, worse -> reduce
        sch.on_validation(metric, higher_is_better=True)
    assert sch.lr == pytest.approx(0.5)
    for _ in range(10):
        sch.on_validation(0.0, higher_is_better=True)
    assert sch.lr == pytest.approx(0.1)  # floored at min_lr
    other = _schedule(schedule="plateau", lr=1.0, min_lr=0.1)
    other.load_state_dict(sch.state_dict())
    assert other.lr == pytest.approx(0.1) and other.best == 11.0


def test_optimizers_and_errors():
    p = [nn.Parameter(torch.zeros(1))]
    assert isinstance(build_optimizer(p, TrainConfig(optimizer="adamw")), torch.optim.AdamW)
    assert isinstance(build_optimizer(p, TrainConfig(optimizer="sgd")), torch.optim.SGD)
    with pytest.raises(ConfigError, match="train.optimizer"):
        build_optimizer(p, TrainConfig(optimizer="lion"))
    with pytest.raises(ConfigError, match="train.schedule"):
        _schedule(schedule="linear")


def test_metrics_jsonl_truncation_and_plot(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (10, 20, 30):
        writer.write("train", step, {"loss": 5.0 - step / 10, "epoch": 1})
    writer.write("valid", 20, {"loss": 4.0, "bleu": 3.5})
    writer.close()
    MetricsWriter(tmp_path, resume_step=20).close()  # a resumed run drops records after step 20
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20, 20]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["bleu"] == 3.5
    png = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    assert png is not None and png.stat().st_size > 1000


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_is_used_on_cpu_and_matches_the_reference_loop(name):
    """build_optimizer picks torch's fused Adam kernel (a measured 4.6 % step speed-up); it
    must update exactly like the plain single-tensor implementation."""
    from nmt.config import TrainConfig
    from nmt.train.optim import build_optimizer

    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    fused_params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    tc = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1)
    fused = build_optimizer(fused_params, tc)
    assert fused.defaults["fused"] is True
    kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    plain = kind(plain_params, lr=0.01, weight_decay=0.1, foreach=False, fused=False)
    for _ in range(6):
        grads = [torch.randn(s) for s in shapes]
        for opt, params in ((fused, fused_params), (plain, plain_params)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(fused_params, plain_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_interval_averages_finite_gradient_norms_of_its_updates():
    interval = Interval("cpu")
    interval.add(torch.tensor(4.0), torch.tensor(4.0), 2)
    assert "grad_norm" not in interval.values(2)  # no update yet: no norm to report
    for norm in (1.0, float("inf"), 3.0):  # an overflowed fp16 step is left out
        interval.add_grad_norm(torch.tensor(norm))
    assert interval.values(2)["grad_norm"] == pytest.approx(2.0)
    interval.reset()
    interval.add_grad_norm(torch.tensor(5.0))
    assert interval.values(1)["grad_norm"] == pytest.approx(5.0)
