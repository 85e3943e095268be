"""Search's own view of a frozen model: a GRU step that looks up its embedding gates.

A search calls the decoder step ~25 times per batch with weights that do not change, so the
embedding half of a 1-layer GRU's input projection can be a table lookup
(:mod:`nmt.ops.gru_gates`). :func:`search_view` builds that table once from the weights the
model has *now* and returns an object with the model's own search contract (``encode``,
``init_state``, ``reorder_state``, ``step``); the model itself keeps one step function, the
one training uses. The :class:`~nmt.search.translator.Translator` calls :func:`search_view` at
its first translation and keeps the view (a model being trained, handed over in training
mode, gets a new view at every call), so validation always decodes the current weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.models.decoder import DecoderState
from nmt.models.encoder import EncoderOutput
from nmt.models.seq2seq import Seq2Seq
from nmt.ops import gru_from_input_gates, input_gate_table
from nmt.search.ensemble import Ensemble

TABLE_MAX_ELEMENTS = 1 << 24  # 64 MiB of fp32: larger vocabularies keep the plain step


def search_view(model: nn.Module) -> nn.Module:
    """``model`` for a search: a :class:`TableStepSeq2Seq` where it applies (also to each
    member of an :class:`Ensemble`), else ``model`` itself. Call it in eval mode, after
    the last weight update."""
    if isinstance(model, Ensemble):
        members = [search_view(m) for m in model.members]
        if all(new is old for new, old in zip(members, model.members)):
            return model
        return Ensemble(members)
    if isinstance(model, Seq2Seq) and table_step_applies(model):
        return TableStepSeq2Seq(model)
    return model


def table_step_applies(model: Seq2Seq) -> bool:
    """A 1-layer GRU decoder with biases, in eval mode (no embedding dropout), outside
    autocast (the table is fp32), with a table under :data:`TABLE_MAX_ELEMENTS`."""
    dec = model.decoder
    rnn = dec.rnn
    return (
        not model.training
        and isinstance(rnn, nn.GRU)
        and rnn.num_layers == 1
        and rnn.bias
        and not torch.is_autocast_enabled(rnn.weight_ih_l0.device.type)
        and dec.embed.vocab_size * rnn.weight_ih_l0.size(0) <= TABLE_MAX_ELEMENTS
    )


class TableStepSeq2Seq(nn.Module):
    """A frozen :class:`Seq2Seq` whose ``step`` takes ``W_e embed(prev) + b_ih`` from a
    ``(vocab, 3 * hidden)`` table made at construction; everything else is the model's.

    Its ``step`` equals ``model.step`` up to float rounding (``tests/test_search_table_step.py``,
    also after ``load_state_dict``: build a new one from the new weights)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        dec = model.decoder
        with torch.no_grad():
            ids = torch.arange(dec.embed.vocab_size, device=dec.rnn.weight_ih_l0.device)
            table = input_gate_table(dec.embed(ids), dec.rnn.weight_ih_l0, dec.rnn.bias_ih_l0)
        # A buffer, so .to(device) moves it with the model; derived, so never saved.
        self.register_buffer("gate_table", table, persistent=False)  # (vocab, 3 * hidden)

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        return self.model.encode(src, src_lengths)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.model.init_state(enc)

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.model.reorder_state(state, index)

    def step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """As :meth:`Seq2Seq.step`: ``prev_tokens (batch,)`` -> log-probs ``(batch, vocab)``,
        attention ``(batch, src_len)`` | None, next state."""
        feat, attn, next_state = self.step_features(prev_tokens, state, enc)
        return self.model.log_probs(feat), attn, next_state

    def step_features(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """:meth:`step` before the output layer (as :meth:`Decoder.step`): features
        ``(batch, hidden)``, attention, next state (a shortlist view applies its own output
        layer: :mod:`nmt.search.shortlist`)."""
        dec = self.model.decoder
        rnn = dec.rnn
        gates = self.gate_table.index_select(0, prev_tokens)  # (batch, 3 * hidden)
        if dec.input_feeding:
            w_feed = rnn.weight_ih_l0[:, dec.embed.emb_dim :]
            gates = torch.addmm(gates, state.feed, w_feed.t())
        h = gru_from_input_gates(gates, state.hidden[0], rnn.weight_hh_l0, rnn.bias_hh_l0)
        return dec.after_rnn(h, h.unsqueeze(0), enc)
