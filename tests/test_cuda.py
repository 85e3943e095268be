"""Training and decoding on a CUDA GPU agree with the CPU; checkpoints move between them.

The tests marked ``cuda`` need a GPU and are skipped without one (``make gpu-check`` runs
them: ``pytest -m cuda``). Each compares a device and precision with the CPU's fp32 through
one harness (:func:`train_step`, :func:`step_error`, :func:`decode`), and the same harness
also runs CPU against CPU in the default suite, so a broken harness fails here too.

Tolerances, against the same step on the CPU in fp32 (same seed, model and batch; SGD with
learning rate 1, so a step's update is its gradient): the loss's relative error and the
update's relative error in the L2 norm over all parameters (:data:`TOLERANCE`). fp32 on the
GPU runs with TF32 off (it would round matmul inputs to 10 bits); bf16 keeps 8 bits of
mantissa, fp16 11 (its step goes through the gradient scaler).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import Config, DecodeConfig
from nmt.data.batching import PackedSplit, collate
from nmt.models.builder import build_model
from nmt.search.translator import Translator
from nmt.train import checkpoint as ckpt
from nmt.train.distributed import DistInfo
from nmt.train.loss import Seq2SeqObjective
from nmt.train.runfolder import StopSignal
from nmt.train.seq2seq_task import batch_loss
from nmt.train.trainer import Trainer

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

VOCAB = 40
# (loss, update) relative errors allowed against the CPU's fp32 step
TOLERANCE = {"fp32": (1e-5, 1e-4), "fp16": (5e-3, 3e-2), "bf16": (2e-2, 1e-1)}
# CPU autocast lowers the matmuls only (the CPU's GRU stays fp32): measured 4e-6 / 1.1e-3
# (bf16) and 2e-7 / 1.2e-4 (fp16)
CPU_AUTOCAST_TOLERANCE = (1e-4, 1e-2)


@pytest.fixture()
def no_tf32(monkeypatch):
    """Full fp32 matmuls on the GPU (cuDNN RNNs use TF32 by default on Ampere and later)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


# --- the harness ---------------------------------------------------------------------------
def tiny_config(precision: str = "fp32", optimizer: str = "sgd"):
    """A 16/32-dim bi-GRU + Bahdanau model; SGD with lr 1 (update = -gradient), no clipping."""
    cfg = OmegaConf.structured(Config)
    cfg.model.emb_dim, cfg.model.hidden_dim, cfg.model.dropout = 16, 32, 0.0
    tc = cfg.train
    tc.precision, tc.optimizer, tc.schedule = precision, optimizer, "constant"
    tc.lr = 1.0 if optimizer == "sgd" else 1e-2
    tc.momentum, tc.clip_norm, tc.label_smoothing, tc.max_epochs = 0.0, 0.0, 0.1, 1
    return cfg


def tiny_batch(seed: int = 0):
    """Six sentence pairs of 3-9 random tokens, padded (a host ``Batch``)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [(9, 7), (3, 5), (7, 9), (5, 3), (8, 8), (4, 6)]
    src = [torch.randint(4, VOCAB, (s,), generator=g) for s, _ in lengths]
    tgt = [torch.randint(4, VOCAB, (t,), generator=g) for _, t in lengths]
    return collate(PackedSplit.of(SimpleNamespace(src=src, tgt=tgt)), list(range(len(src))))


class OneBatchTask:
    """What :meth:`Trainer.train_step` asks of a task, over one batch, through the training
    task's own host-to-device path (:func:`nmt.train.seq2seq_task.batch_loss`)."""

    higher_is_better = True

    def __init__(self, model, batch, device: torch.device) -> None:
        self.model, self.batch, self.device = model, batch, device
        self.objective = Seq2SeqObjective(model, 0.1)

    def batches_per_epoch(self) -> int:
        return 1

    def n_tokens(self, _item) -> int:
        return int(self.batch.n_tgt_tokens)

    def forward(self, objective, _item):
        return batch_loss(objective, self.batch, self.device)

    def tokenizer_payload(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state, device) -> None:
        pass


def make_trainer(device: str, precision: str, optimizer: str, out) -> Trainer:
    """A fresh Trainer on ``device`` over the tiny model (seed 0) and batch."""
    cfg = tiny_config(precision, optimizer)
    torch.manual_seed(0)
    model = build_model(cfg.model, VOCAB, VOCAB)
    task = OneBatchTask(model, tiny_batch(), torch.device(device))
    trainer = Trainer(cfg, task, out, DistInfo(), torch.device(device), StopSignal())
    trainer.t0 = time.perf_counter()  # the clock run() starts, read by checkpoint()
    return trainer


@dataclass
class StepResult:
    loss: float  # per target token, label-smoothed
    update: dict[str, torch.Tensor]  # per parameter, after - before, fp32 on the CPU


def train_step(trainer: Trainer) -> StepResult:
    """One optimizer step of ``trainer`` on its batch. An fp16 step that the gradient scaler
    skips (an overflow at its starting scale) is taken again at the lowered scale, as
    training would take the next one."""
    before = {k: v.detach().float().cpu().clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(8):
        scale = trainer.scaler.get_scale()
        trainer.interval.reset()
        trainer.train_step([0])
        if not trainer.scaler.is_enabled() or trainer.scaler.get_scale() >= scale:
            break
    loss = trainer.interval.values(trainer.task.n_tokens(0))["loss"]
    after = trainer.model.state_dict()
    return StepResult(loss, {k: after[k].detach().float().cpu() - v for k, v in before.items()})


def step_error(a: StepResult, ref: StepResult) -> tuple[float, float]:
    """``a``'s relative errors against ``ref``: the loss's, and the update's (L2 over all)."""
    diff = sum(float((a.update[k] - v).pow(2).sum()) for k, v in ref.update.items())
    norm = sum(float(v.pow(2).sum()) for v in ref.update.values())
    return abs(a.loss - ref.loss) / abs(ref.loss), math.sqrt(diff / norm)


def compare_step(device: str, precision: str, tmp_path) -> tuple[float, float]:
    """One step on ``device`` in ``precision`` against the CPU's fp32 step."""
    ref = train_step(make_trainer("cpu", "fp32", "sgd", tmp_path / "ref"))
    got = train_step(make_trainer(device, precision, "sgd", tmp_path / "got"))
    return step_error(got, ref)


class DigitTokenizer:
    """Sentences of token ids written as numbers ("5 17 9"): a tokenizer for a Translator."""

    def encode(self, text: str) -> list[int]:
        return [int(w) for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(str(i) for i in ids)


SENTENCES = ["5 6 7 8 9", "10 11 12", "13 14 15 16 17 18 19", "20 21", "22 23 24 25"]


def decode(device: str, beam: int = 5) -> list[list[tuple[list[int], float]]]:
    """Beam search over :data:`SENTENCES` with a tiny random model (weights drawn wide, so
    its choices are clear-cut) through the Translator on ``device``: per sentence, its 3-best
    (tokens, score)."""
    cfg = tiny_config()
    cfg.model.init_scale = 1.0
    torch.manual_seed(0)
    model = build_model(cfg.model, VOCAB, VOCAB).to(device).eval()
    dec = DecodeConfig(
        beam_size=beam, n_best=3, min_len=1, max_len_a=1.0, max_len_b=5, max_sentences=2
    )
    tok = DigitTokenizer()
    translator = Translator(model, tok, tok, dec, device)
    nbest = translator.translate_nbest(SENTENCES)
    return [[(t.tokens, t.score) for t in hyps] for hyps in nbest]


def assert_same_hypotheses(got, ref, score_tol: float) -> None:
    assert len(got) == len(ref) == len(SENTENCES)
    for g, r in zip(got, ref):
        assert [tokens for tokens, _ in g] == [tokens for tokens, _ in r]
        assert [s for _, s in g] == pytest.approx([s for _, s in r], abs=score_tol)


def resume_elsewhere(save_on: str, resume_on: str, tmp_path) -> tuple[StepResult, StepResult]:
    """Adam: a step on ``save_on``, its last.pt loaded by a fresh trainer on ``resume_on``
    (checked equal, tensor by tensor), then the next step on both: (continued, resumed)."""
    first = make_trainer(save_on, "fp32", "adam", tmp_path / "a")
    train_step(first)
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, first.checkpoint(full=True))
    second = make_trainer(resume_on, "fp32", "adam", tmp_path / "b")
    rng = second.load_state_dict(ckpt.load_checkpoint(path, map_location="cpu"))
    ckpt.set_rng_state(rng)
    assert second.step == first.step == 1
    for name, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name].cpu(), value.cpu()), name
    a, b = first.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and a
    for i, state in a.items():
        for key, value in state.items():
            assert torch.equal(b[i][key].cpu(), value.cpu()), (i, key)
    for p in second.model.parameters():
        assert p.device.type == resume_on
    return train_step(first), train_step(second)


# --- on the CPU: the harness itself ----------------------------------------------------------
def test_harness_cpu_fp32_step_is_reproducible(tmp_path):
    loss_err, update_err = compare_step("cpu", "fp32", tmp_path)
    assert loss_err == 0.0 and update_err == 0.0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_harness_cpu_autocast_step_follows_fp32(precision, tmp_path):
    loss_err, update_err = compare_step("cpu", precision, tmp_path)
    assert 0.0 < update_err  # autocast really ran
    assert loss_err < CPU_AUTOCAST_TOLERANCE[0] and update_err < CPU_AUTOCAST_TOLERANCE[1]


def test_harness_catches_a_different_step(tmp_path):
    ref = train_step(make_trainer("cpu", "fp32", "sgd", tmp_path / "ref"))
    other = make_trainer("cpu", "fp32", "sgd", tmp_path / "other")
    other.task.batch = tiny_batch(seed=1)  # same model, another batch
    _, update_err = step_error(train_step(other), ref)
    assert update_err > TOLERANCE["bf16"][1]


def test_harness_cpu_decoding_is_reproducible():
    first = decode("cpu")
    assert all(len(hyps) == 3 and hyps[0][0] for hyps in first)  # 3 non-empty each
    assert_same_hypotheses(decode("cpu"), first, score_tol=0.0)


def test_harness_checkpoint_round_trip_on_the_cpu(tmp_path):
    continued, resumed = resume_elsewhere("cpu", "cpu", tmp_path)
    assert step_error(resumed, continued) == (0.0, 0.0)


def test_batch_loss_gpu_branch_equals_the_cpu_branch(monkeypatch):
    """The GPU branch of a training step's batch (target positions found on the host, the
    lengths kept there), run on host tensors with the copies stubbed out, gives the CPU
    branch's loss and gradients exactly."""
    from nmt.train import seq2seq_task

    monkeypatch.setattr(seq2seq_task, "to_device", lambda tensor, device: tensor)
    batch, results = tiny_batch(), []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model(tiny_config().model, VOCAB, VOCAB)
        loss, nll = batch_loss(Seq2SeqObjective(model, 0.1), batch, torch.device(device))
        loss.backward()
        results.append((loss.detach(), nll, [p.grad for p in model.parameters()]))
    (l0, n0, g0), (l1, n1, g1) = results
    assert torch.equal(l0, l1) and torch.equal(n0, n1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


# --- on a GPU ----------------------------------------------------------------------------------
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_step_follows_the_cpu(precision, tmp_path, no_tf32):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    loss_err, update_err = compare_step("cuda", precision, tmp_path)
    loss_tol, update_tol = TOLERANCE[precision]
    assert loss_err < loss_tol, f"loss relative error {loss_err:.3g}"
    assert update_err < update_tol, f"update relative error {update_err:.3g}"


@pytest.mark.cuda
@needs_cuda
def test_cuda_beam_search_gives_the_cpu_hypotheses(no_tf32):
    assert_same_hypotheses(decode("cuda"), decode("cpu"), score_tol=1e-4)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("save_on,resume_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_cuda_checkpoint_resumes_on_the_other_device(save_on, resume_on, tmp_path, no_tf32):
    continued, resumed = resume_elsewhere(save_on, resume_on, tmp_path)
    loss_err, update_err = step_error(resumed, continued)
    # Adam's second update divides by sqrt(v): near-zero gradients amplify rounding a little
    assert loss_err < 1e-5 and update_err < 1e-3, (loss_err, update_err)


@pytest.mark.cuda
@needs_cuda
def test_cuda_step_keeps_lengths_on_the_host(tmp_path):
    """The training step's batch: lengths stay on the host, the rest is on the GPU."""
    seen = {}
    trainer = make_trainer("cuda", "fp32", "sgd", tmp_path)
    real = trainer.objective.forward

    def spy(src, src_lengths, tgt_in, tgt_out, keep=None):
        seen.update(src=src.device.type, lengths=src_lengths.device.type, keep=keep is not None)
        return real(src, src_lengths, tgt_in, tgt_out, keep)

    trainer.ddp.forward = spy
    train_step(trainer)
    assert seen == {"src": "cuda", "lengths": "cpu", "keep": True}
