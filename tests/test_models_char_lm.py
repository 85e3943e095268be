"""Character LM: builds from the config, overfits a short text, samples only its vocabulary,
and carries its state across BPTT chunks without keeping their graphs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from nmt.config import ModelConfig
from nmt.errors import NMTError
from nmt.models.builder import build_model
from nmt.models.char_lm import CharLM
from nmt.search.sampling_lm import sample_lm

TEXT = "to be or not to be, that is the question. "
CHARS = sorted(set(TEXT))
IDS = torch.tensor([CHARS.index(c) for c in TEXT])
V = len(CHARS)


def make(cell: str = "lstm", layers: int = 2, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        arch="char_lm",
        cell=cell,
        layers=layers,
        emb_dim=8,
        hidden_dim=32,
        dropout=0.0,
        attention="none",
        bidirectional=False,
        bridge="none",
    )
    return build_model(OmegaConf.structured(cfg), V, V)


def test_builds_char_lm_from_default_yaml_values():
    model = make()
    assert isinstance(model, CharLM)
    log_probs, state = model(IDS[None, :10])
    assert log_probs.shape == (1, 10, V)
    assert isinstance(state, tuple) and state[0].shape == (2, 1, 32)
    gru = make(cell="gru")
    _, gru_state = gru(IDS[None, :10])
    assert torch.is_tensor(gru_state) and gru_state.shape == (2, 1, 32)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_equals_steps_and_chunks(cell):
    model = make(cell=cell).eval()
    x = IDS[None, :12].repeat(2, 1)
    with torch.no_grad():
        full, _ = model(x)
        first, state = model(x[:, :5])
        second, _ = model(x[:, 5:], state)
        torch.testing.assert_close(torch.cat([first, second], 1), full, atol=1e-5, rtol=0)
        state = model.init_state(2, "cpu")
        for t in range(x.size(1)):
            lp, state = model.step(x[:, t], state)
            torch.testing.assert_close(lp, full[:, t], atol=1e-5, rtol=0)


def test_overfits_short_text_and_samples_from_vocabulary():
    model = make(layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = IDS[None, :-1], IDS[None, 1:]
    for _ in range(300):
        log_probs, _ = model(x)
        loss = F.nll_loss(log_probs.reshape(-1, V), y.reshape(-1))
        if loss.item() < 0.05:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    model.eval()
    # Greedy continuation of a prompt reproduces the memorised text.
    prompt = IDS[:8].tolist()
    out = sample_lm(model, prompt, 20, temperature=0.0)
    assert "".join(CHARS[i] for i in out) == TEXT[8:28]
    gen = torch.Generator().manual_seed(3)
    sampled = sample_lm(model, prompt, 50, temperature=1.5, top_k=5, generator=gen)
    assert len(sampled) == 50 and all(0 <= i < V for i in sampled)
    again = sample_lm(model, prompt, 50, 1.5, 5, torch.Generator().manual_seed(3))
    assert again == sampled  # seeded generator: reproducible
    with pytest.raises(NMTError):
        sample_lm(model, [], 5)


def test_top_k_one_is_greedy():
    model = make().eval()
    prompt = IDS[:4].tolist()
    greedy = sample_lm(model, prompt, 10, temperature=0.0)
    top1 = sample_lm(model, prompt, 10, temperature=1.0, top_k=1)
    assert greedy == top1


def test_state_is_detached_between_chunks():
    model = make()
    x = IDS[None, :20]
    emb_out = []

    def keep(module, inputs, output):  # noqa: ARG001
        output.retain_grad()
        emb_out.append(output)

    hook = model.decoder.embed.register_forward_hook(keep)
    lp1, state = model(x[:, :10])
    state = model.detach_state(state)
    assert all(not s.requires_grad for s in state)
    lp2, _ = model(x[:, 10:], state)
    hook.remove()
    F.nll_loss(lp2[0, :-1], x[0, 11:]).backward()
    assert emb_out[0].grad is None  # chunk 1's graph is untouched
    assert emb_out[1].grad is not None
    # Chunk 1's graph is still intact and can be backpropagated on its own.
    lp1.sum().backward()
    assert emb_out[0].grad is not None
