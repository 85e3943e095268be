"""Seq2Seq: padding never changes results, the step path equals the training path, bridges,
tying/sharing, initialisation and the configuration checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import BOS_ID, PAD_ID, ModelConfig, conf_dir, register_configs
from nmt.errors import ConfigError
from nmt.models.builder import build_model, count_parameters
from nmt.models.encoder import EncoderOutput

CELLS = ["rnn", "gru", "lstm"]
ATTENTIONS = ["none", "bahdanau", "luong_dot", "luong_general", "luong_concat"]
V_SRC, V_TGT = 13, 11
# (cell, attention, input_feeding): every combination that exists.
COMBOS = [
    (c, a, f)
    for c, a, f in itertools.product(CELLS, ATTENTIONS, [False, True])
    if not (f and a == "none")
]


def make(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    opts = dict(emb_dim=6, hidden_dim=8, dropout=0.0)
    opts.update(overrides)
    return build_model(OmegaConf.structured(ModelConfig(**opts)), V_SRC, V_TGT).eval()


def padded(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out, torch.tensor([len(s) for s in seqs])


SRC = [[5, 6, 7], [4, 8, 9, 10, 11, 12], [7, 4]]
TGT_IN = [[BOS_ID, 4, 5, 6], [BOS_ID, 7], [BOS_ID, 8, 9, 10, 4, 5]]


@pytest.mark.parametrize("cell,attention,feed", COMBOS)
def test_padding_does_not_change_results(cell, attention, feed):
    model = make(cell=cell, attention=attention, input_feeding=feed, layers=2)
    src, src_len = padded(SRC)
    tgt, _ = padded(TGT_IN)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        log_probs, attn = model(src, src_len, tgt)
        for i in range(len(SRC)):
            s, t = len(SRC[i]), len(TGT_IN[i])
            one_src, one_len = padded([SRC[i]])
            one_tgt, _ = padded([TGT_IN[i]])
            enc1 = model.encode(one_src, one_len)
            lp1, attn1 = model(one_src, one_len, one_tgt)
            torch.testing.assert_close(enc.memory[i, :s], enc1.memory[0], atol=1e-5, rtol=0)
            assert torch.all(enc.memory[i, s:] == 0)
            torch.testing.assert_close(log_probs[i, :t], lp1[0], atol=1e-5, rtol=0)
            if attention == "none":
                assert attn is None and attn1 is None
            else:
                torch.testing.assert_close(attn[i, :t, :s], attn1[0], atol=1e-5, rtol=0)
                assert torch.all(attn[i, :, s:] == 0)  # padding gets no weight
    assert log_probs.shape == (3, tgt.size(1), V_TGT)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, tgt.size(1)))


@pytest.mark.parametrize("cell,attention,feed", COMBOS)
def test_step_path_equals_training_path(cell, attention, feed):
    model = make(cell=cell, attention=attention, input_feeding=feed, layers=2)
    src, src_len = padded(SRC)
    tgt, _ = padded(TGT_IN)
    with torch.no_grad():
        expected, expected_attn = model(src, src_len, tgt)
        enc = model.encode(src, src_len)
        state = model.init_state(enc)
        for t in range(tgt.size(1)):
            lp, attn, state = model.step(tgt[:, t], state, enc)
            torch.testing.assert_close(lp, expected[:, t], atol=1e-5, rtol=0)
            if attention != "none":
                torch.testing.assert_close(attn, expected_attn[:, t], atol=1e-5, rtol=0)
            else:
                assert attn is None


@pytest.mark.parametrize("cell", CELLS)
def test_reorder_and_index_select_follow_rows(cell):
    model = make(cell=cell, attention="bahdanau", input_feeding=True)
    src, src_len = padded(SRC)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        state = model.init_state(enc)
        prev = torch.tensor([4, 5, 6])
        lp, _, state = model.step(prev, state, enc)
        index = torch.tensor([2, 0, 2])
        enc2, state2 = enc.index_select(index), model.reorder_state(state, index)
        assert isinstance(enc2, EncoderOutput) and enc2.keys.shape[0] == 3
        nxt = torch.tensor([7, 8, 7])
        lp_full, _, _ = model.step(nxt, state, enc)
        lp_sel, _, _ = model.step(nxt[index], state2, enc2)
    torch.testing.assert_close(lp_sel, lp_full[index], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "cell,bidirectional,layers", list(itertools.product(CELLS, [True, False], [1, 2]))
)
@pytest.mark.parametrize("bridge", ["none", "linear"])
def test_bridge_shapes_and_values(cell, bidirectional, layers, bridge):
    model = make(cell=cell, bidirectional=bidirectional, layers=layers, bridge=bridge)
    src, src_len = padded(SRC)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        state = model.init_state(enc)
    hidden = state.hidden
    if cell == "lstm":
        assert isinstance(hidden, tuple) and len(hidden) == 2
        h = hidden[0]
    else:
        assert torch.is_tensor(hidden)
        h = hidden
    assert h.shape == (layers, 3, 8)
    if bridge == "none":
        # The top layer's state is the encoder output at the last real token (forward half)
        # and at the first token (backward half).
        half = 4 if bidirectional else 8
        for i, n in enumerate(src_len.tolist()):
            torch.testing.assert_close(h[-1, i, :half], enc.memory[i, n - 1, :half])
            if bidirectional:
                torch.testing.assert_close(h[-1, i, half:], enc.memory[i, 0, half:])
    else:
        assert torch.all(h.abs() <= 1.0)  # tanh
        assert not torch.allclose(h[-1], enc.final[0][-1] if cell == "lstm" else enc.final[-1])


@pytest.mark.parametrize(
    "overrides,vocab,match",
    [
        (dict(bidirectional=True, hidden_dim=7), (V_SRC, V_TGT), "even model.hidden_dim"),
        (dict(share_embeddings=True), (V_SRC, V_TGT), "share_embeddings"),
        (dict(attention="none", input_feeding=True), (V_SRC, V_TGT), "input_feeding"),
        (dict(cell="transformer"), (V_SRC, V_TGT), "model.cell"),
        (dict(attention="luong"), (V_SRC, V_TGT), "model.attention"),
        (dict(bridge="mlp"), (V_SRC, V_TGT), "model.bridge"),
        (dict(attentional_vector="relu"), (V_SRC, V_TGT), "model.attentional_vector"),
        (dict(init="normal"), (V_SRC, V_TGT), "model.init"),
        (dict(dropout=1.0), (V_SRC, V_TGT), "model.dropout"),
        (dict(layers=0), (V_SRC, V_TGT), "model.layers"),
        (dict(arch="char_lm", attention="bahdanau"), (V_SRC, V_TGT), "char_lm"),
        (dict(arch="transformer"), (V_SRC, V_TGT), "model.arch"),
        (dict(), (3, V_TGT), "source vocabulary"),
    ],
)
def test_invalid_combinations_raise_config_error(overrides, vocab, match):
    # A plain dataclass: a DictConfig already refuses a name outside a key's choices
    # (model.cell=transformer, tests/test_configs.py); build_model refuses it in both.
    with pytest.raises(ConfigError, match=match):
        build_model(ModelConfig(**overrides), *vocab)


@pytest.mark.parametrize("kind", ["tanh", "linear"])
def test_attentional_vector_is_tanh_or_linear(kind):
    model = make(attention="bahdanau", input_feeding=True, attentional_vector=kind)
    dec = model.decoder
    with torch.no_grad():
        dec.combine.weight.mul_(50.0)  # pre-activations well outside [-1, 1]
    src, src_len = padded(SRC)
    tgt, _ = padded(TGT_IN)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        h = torch.randn(3, 8)
        feat, _ = dec.attend(h, enc)
        context, _ = dec.attention(h, enc.keys, enc.memory, enc.mask)
        pre = torch.cat([h, context], -1) @ dec.combine.weight.T
        if kind == "linear":
            expected = pre + dec.combine.bias
            assert feat.abs().max() > 1.0
        else:
            assert dec.combine.bias is None
            expected = torch.tanh(pre)
        torch.testing.assert_close(feat, expected)
        # Input feeding passes the same vector on: the step path still equals teacher forcing.
        full, _ = model(src, src_len, tgt)
        state = model.init_state(enc)
        for t in range(tgt.size(1)):
            lp, _, state = model.step(tgt[:, t], state, enc)
            torch.testing.assert_close(lp, full[:, t], atol=1e-5, rtol=0)


def test_checkpoint_configs_without_attentional_vector_keep_tanh():
    from nmt.config import from_plain

    old = {"model": {"cell": "gru", "attention": "bahdanau"}}  # written before the option
    assert from_plain(old).model.attentional_vector == "tanh"


def test_tied_and_shared_embeddings():
    tied = make(tie_embeddings=True, emb_dim=6, hidden_dim=8)
    assert tied.decoder.out.weight is tied.decoder.embed.table.weight
    assert tied.decoder.pre_output is not None  # hidden 8 -> emb 6 before the tied matrix
    same = make(tie_embeddings=True, emb_dim=8, hidden_dim=8)
    assert same.decoder.pre_output is None
    torch.manual_seed(0)
    cfg = OmegaConf.structured(ModelConfig(emb_dim=6, hidden_dim=8, share_embeddings=True))
    shared = build_model(cfg, V_SRC, V_SRC)
    assert shared.encoder.embed is shared.decoder.embed
    plain = build_model(OmegaConf.structured(ModelConfig(emb_dim=6, hidden_dim=8)), V_SRC, V_SRC)
    # One table fewer, counted once.
    assert count_parameters(plain) - count_parameters(shared) == V_SRC * 6
    src, src_len = padded(SRC)
    tgt, _ = padded(TGT_IN)
    log_probs, _ = tied(src, src_len, tgt)
    log_probs[:, :, 4].sum().backward()
    assert tied.decoder.embed.table.weight.grad is not None


@pytest.mark.parametrize("init", ["uniform", "xavier"])
def test_initialisation(init):
    model = make(init=init, init_scale=0.05)
    for name, p in model.named_parameters():
        if init == "uniform":
            assert p.abs().max() <= 0.05, name
        elif p.dim() == 1:
            assert torch.all(p == 0), name
    assert torch.all(model.encoder.embed.table.weight[PAD_ID] == 0)
    assert torch.all(model.decoder.embed.table.weight[PAD_ID] == 0)


def test_parameter_count_counts_tied_and_shared_matrices_once():
    untied = make(tie_embeddings=False)
    tied = make(tie_embeddings=True, emb_dim=8)  # emb_dim == hidden_dim: no pre-output map
    untied8 = make(tie_embeddings=False, emb_dim=8)
    # Tying removes exactly the (V_TGT, 8) output matrix, counted once.
    assert count_parameters(untied8) - count_parameters(tied) == V_TGT * 8
    frozen = make()
    frozen.encoder.embed.table.weight.requires_grad_(False)
    assert count_parameters(frozen, trainable_only=True) == count_parameters(untied) - V_SRC * 6


def test_dropout_only_in_training_mode():
    model = make(dropout=0.5)
    src, src_len = padded(SRC)
    tgt, _ = padded(TGT_IN)
    with torch.no_grad():
        a, _ = model(src, src_len, tgt)
        b, _ = model(src, src_len, tgt)
        model.train()
        c, _ = model(src, src_len, tgt)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("option", sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml")))
def test_every_model_option_builds_normalizes_and_trains(option):
    """Each conf/model option builds the model it names; its outputs are log-probabilities
    and one backward pass reaches every trainable parameter with finite gradients."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(
            "config", overrides=[f"model={option}", "model.hidden_dim=16", "model.emb_dim=8"]
        )
    torch.manual_seed(0)
    model = build_model(cfg.model, 20, 20).train()
    if cfg.model.arch == "char_lm":
        x = torch.randint(4, 20, (3, 7))
        log_probs, _ = model(x)
    else:
        src, src_len = padded([[5, 6, 7, 8], [9, 10]])
        log_probs, attn = model(src, src_len, torch.tensor([[2, 5, 6], [2, 7, 8]]))
        assert (attn is None) == (cfg.model.attention == "none")
    assert torch.allclose(log_probs.logsumexp(-1), torch.zeros(()), atol=1e-5)
    log_probs[..., 4].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    cell = {"lstm": torch.nn.LSTM, "rnn": torch.nn.RNN}.get(cfg.model.cell, torch.nn.GRU)
    assert any(isinstance(m, cell) for m in model.modules())


@pytest.mark.parametrize("attention", ["bahdanau", "luong_concat", "luong_general", "luong_dot"])
def test_encoder_keys_are_the_plain_source_side_of_every_score(attention):
    """EncoderOutput.keys means one thing for every attention: what the (projected) query is
    compared with, W_k m + b, W m or m itself (no factor of the additive kernel's sigmoid form)."""
    model = make(attention=attention)
    src, src_len = padded(SRC)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        proj = model.decoder.attention.key_proj if attention != "luong_dot" else None
        want = enc.memory if proj is None else proj(enc.memory)
    torch.testing.assert_close(enc.keys, want)
