"""The target side: embeddings -> RNN -> attention -> attentional vector -> output layer.

Luong order at every step: the RNN takes [embedding (; previous attentional vector when
input feeding)], then its new top hidden state ``h`` attends over the source, and the
attentional vector ``tanh(W [h; context])`` is the output feature (``W [h; context] + b``,
no tanh, with ``attentional_vector="linear"``, as OpenNMT-py and eole do). Without attention
the feature is ``h`` itself.

:meth:`Decoder.step` is the one step function used by training (input feeding) and every
search, so they can never disagree. Without input feeding no step depends on the previous
output, so :meth:`Decoder.features` runs the RNN over the whole target in ONE call and
attends for all steps with batched matmuls -- no Python loop over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.models.attention import Attention
from nmt.models.embeddings import Embeddings
from nmt.models.encoder import EncoderOutput
from nmt.models.rnn import RNNState, gru_step, make_rnn, select_state


@dataclass
class DecoderState:
    """``hidden``: the RNN state ``(layers, batch, hidden)`` (a pair for LSTM);
    ``feed``: the previous attentional vector ``(batch, hidden)`` (input feeding only)."""

    hidden: RNNState
    feed: Tensor | None = None

    def index_select(self, index: Tensor) -> DecoderState:
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return DecoderState(select_state(self.hidden, index), feed)


class Decoder(nn.Module):
    """Unidirectional RNN decoder with optional attention and the output projection.

    Args:
        embed: the target embeddings (possibly shared with the source).
        memory_dim: width of the encoder memory (unused without attention).
        attentional_vector: ``tanh`` (``tanh(W [h; c])``) or ``linear`` (``W [h; c] + b``).
        tie: share the output matrix with ``embed``'s table (through a linear
            ``hidden -> emb_dim`` map when the sizes differ).
    """

    def __init__(
        self,
        embed: Embeddings,
        vocab_size: int,
        cell: str,
        hidden: int,
        layers: int,
        dropout: float,
        attention: str = "none",
        input_feeding: bool = False,
        memory_dim: int = 0,
        attentional_vector: str = "tanh",
        tie: bool = False,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.hidden_dim = hidden
        self.input_feeding = input_feeding and attention != "none"
        in_size = embed.emb_dim + (hidden if self.input_feeding else 0)
        self.rnn = make_rnn(cell, in_size, hidden, layers, dropout)
        self.attention: Attention | None = None
        self.combine: nn.Linear | None = None
        if attention != "none":
            self.attention = Attention(attention, hidden, memory_dim, hidden)
            bias = attentional_vector == "linear"
            self.combine = nn.Linear(hidden + memory_dim, hidden, bias=bias)
        self.combine_tanh = attentional_vector == "tanh"
        self.dropout = nn.Dropout(dropout)
        self._gate_table: tuple | None = None  # search's embedding-gates cache (_folded_step)
        self.pre_output: nn.Linear | None = None
        if tie:
            if hidden != embed.emb_dim:
                self.pre_output = nn.Linear(hidden, embed.emb_dim, bias=False)
            self.out = nn.Linear(embed.emb_dim, vocab_size)
            self.out.weight = embed.table.weight
        else:
            self.out = nn.Linear(hidden, vocab_size)

    def precompute(self, memory: Tensor) -> Tensor | None:
        """Attention keys for ``memory``, computed once per sentence (see EncoderOutput)."""
        return None if self.attention is None else self.attention.precompute(memory)

    def _attend(self, h: Tensor, enc: EncoderOutput | None) -> tuple[Tensor, Tensor | None]:
        """``h (batch, [tgt_len,] hidden)`` -> output features of the same shape, attention."""
        if self.attention is None:
            return self.dropout(h), None
        context, weights = self.attention(h, enc.keys, enc.memory, enc.mask)
        feat = self.combine(torch.cat([h, context], dim=-1))
        if self.combine_tanh:
            feat = torch.tanh(feat)
        return self.dropout(feat), weights

    def step(
        self, prev: Tensor, state: DecoderState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """One token per row: ``prev (batch,)`` -> features ``(batch, hidden)``,
        attention ``(batch, src_len)`` | None, and the next state."""
        if self._folds_embedding():
            return self._folded_step(prev, state, enc)
        return self._step(self.embed(prev), state, enc)

    def _folds_embedding(self) -> bool:
        """Search through a 1-layer GRU (eval mode, no autograd, no autocast): see
        :meth:`_folded_step`. The table must stay small (64 MiB of fp32)."""
        rnn = self.rnn
        return (
            not self.training
            and not torch.is_grad_enabled()
            and isinstance(rnn, nn.GRU)
            and rnn.num_layers == 1
            and rnn.bias
            and not torch.is_autocast_enabled(rnn.weight_ih_l0.device.type)
            and self.embed.vocab_size * rnn.weight_ih_l0.size(0) <= FOLD_MAX_ELEMENTS
        )

    def _folded_step(
        self, prev: Tensor, state: DecoderState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """:meth:`step` with the embedding half of the GRU's input projection looked up
        instead of multiplied: ``W_ih [e; f] + b_ih = (W_e e + b_ih) + W_f f``, and the first
        term is one row of a ``(vocab, 3 * hidden)`` table made once per weight version
        (a search calls this step ~25 times per batch). On the bench's reference model that
        is ~9 % of a beam step's multiply-adds."""
        gates = self._embedding_gates().index_select(0, prev)
        if self.input_feeding:
            w_feed = self.rnn.weight_ih_l0[:, self.embed.emb_dim :]
            gates = torch.addmm(gates, state.feed, w_feed.t())
        h = gru_step(gates, state.hidden[0], self.rnn)
        feat, attn = self._attend(h, enc)
        return feat, attn, DecoderState(h.unsqueeze(0), feat if self.input_feeding else None)

    def _embedding_gates(self) -> Tensor:
        """``(vocab, 3 * hidden)``: ``W_e embed(v) + b_ih`` for every token ``v``, recomputed
        when a weight changed (training bumps the tensors' version counters)."""
        rnn = self.rnn
        params = [*self.embed.parameters(), rnn.weight_ih_l0, rnn.bias_ih_l0]
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._gate_table is None or self._gate_table[0] != key:
            ids = torch.arange(self.embed.vocab_size, device=rnn.weight_ih_l0.device)
            w_emb = rnn.weight_ih_l0[:, : self.embed.emb_dim]
            table = torch.addmm(rnn.bias_ih_l0, self.embed(ids), w_emb.t())
            self._gate_table = (key, table)
        return self._gate_table[1]

    def _step(
        self, x: Tensor, state: DecoderState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """:meth:`step` from the embedded tokens ``x (batch, emb_dim)``."""
        if self.input_feeding:
            x = torch.cat([x, state.feed], dim=-1)
        out, hidden = self.rnn(x.unsqueeze(1), state.hidden)
        feat, attn = self._attend(out.squeeze(1), enc)
        return feat, attn, DecoderState(hidden, feat if self.input_feeding else None)

    def features(
        self, tgt_in: Tensor, state: DecoderState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """Teacher forcing over ``tgt_in (batch, tgt_len)``.

        Returns:
            features ``(batch, tgt_len, hidden)``, attention ``(batch, tgt_len, src_len)`` |
            None, and the state after the last position (padding at the end of a row never
            changes its earlier positions: the RNN only looks back).
        """
        if self.input_feeding:
            # One embedding lookup for all steps: one backward into the table, not one per step.
            embedded = self.embed(tgt_in)
            feats, attns = [], []
            for t in range(tgt_in.size(1)):
                feat, attn, state = self._step(embedded[:, t], state, enc)
                feats.append(feat)
                attns.append(attn)
            return torch.stack(feats, 1), torch.stack(attns, 1), state
        out, hidden = self.rnn(self.embed(tgt_in), state.hidden)
        feats, attn = self._attend(out, enc)
        return feats, attn, DecoderState(hidden, None)

    def logits(self, feats: Tensor) -> Tensor:
        """``(..., hidden)`` -> ``(..., vocab)``."""
        return output_layer(*self.output_projection(feats))

    def output_projection(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The output layer as ``(x, weight, bias)`` with ``logits = x @ weight.T + bias``
        (``x (..., emb_dim or hidden)``, ``weight (vocab, same)``), for fused losses."""
        if self.pre_output is not None:
            feats = self.pre_output(feats)
        return feats, self.out.weight, self.out.bias


def output_layer(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x (..., d) @ weight (V, d).T + bias``.

    On the CPU without autograd (fp32, no autocast) the product is formed in slices of 512
    vocabulary rows written in place into the ``(n, V)`` result. Measured on a 2-core AMD EPYC with torch's
    MKL (docs/performance.md): one ``(n, 256) x (256, 5470)`` call ran at ~35-45 GFLOP/s, the
    same work in 512-row slices at ~55-70, whatever ``n``. Elsewhere it is ``F.linear``
    (which also keeps autocast's casts).
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if (
        needs_grad
        or x.device.type != "cpu"
        or x.dtype != weight.dtype
        or torch.is_autocast_enabled("cpu")
    ):
        return torch.nn.functional.linear(x, weight, bias)
    lead, d = x.shape[:-1], x.size(-1)
    x2 = x.reshape(-1, d)
    V = weight.size(0)
    out = x2.new_empty(x2.size(0), V)
    for v in range(0, V, OUTPUT_SLICE):
        w = weight[v : v + OUTPUT_SLICE].t()
        if bias is None:
            torch.mm(x2, w, out=out[:, v : v + OUTPUT_SLICE])
        else:
            torch.addmm(bias[v : v + OUTPUT_SLICE], x2, w, out=out[:, v : v + OUTPUT_SLICE])
    return out.view(*lead, V)


OUTPUT_SLICE = 512  # vocabulary rows per output-layer slice on the CPU (see output_layer)
FOLD_MAX_ELEMENTS = 1 << 24  # largest embedding-gates table search builds (Decoder._folded_step)
