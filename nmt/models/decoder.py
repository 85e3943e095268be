"""The target side: embeddings -> RNN -> attention -> attentional vector -> output layer.

Luong order at every step: the RNN takes [embedding (; previous attentional vector when
input feeding)], then its new top hidden state ``h`` attends over the source, and the
attentional vector ``tanh(W [h; context])`` is the output feature (``W [h; context] + b``,
no tanh, with ``attentional_vector="linear"``, as OpenNMT-py and eole do). Without attention
the feature is ``h`` itself.

:meth:`Decoder.step` is the model's one step function, used by training (input feeding) and
by every search. For a 1-layer GRU the Translator searches through
:class:`~nmt.search.table_step.TableStepSeq2Seq`, which takes the embedding half of the
GRU's input gates from a table and is tested equal to this step
(``tests/test_search_table_step.py``). Without input feeding no step depends on the previous
output, so :meth:`Decoder.features` runs the RNN over the whole target in ONE call and
attends for all steps with batched matmuls -- no Python loop over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.errors import NMTError
from nmt.models.attention import Attention
from nmt.models.embeddings import Embeddings
from nmt.models.encoder import EncoderOutput
from nmt.models.rnn import RNNState, make_rnn, select_state
from nmt.ops import sliced_linear


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

    def attend(self, h: Tensor, enc: EncoderOutput | None) -> tuple[Tensor, Tensor | None]:
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
        return self._step(self.embed(prev), state, enc)

    def _step(
        self, x: Tensor, state: DecoderState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """:meth:`step` from the embedded tokens ``x (batch, emb_dim)``."""
        if self.input_feeding:
            x = torch.cat([x, state.feed], dim=-1)
        out, hidden = self.rnn(x.unsqueeze(1), state.hidden)
        return self.after_rnn(out.squeeze(1), hidden, enc)

    def after_rnn(
        self, h: Tensor, hidden: RNNState, enc: EncoderOutput | None
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """The rest of a step once the RNN has run: its top output ``h (batch, hidden)``
        attends; ``hidden`` (and the feature, with input feeding) is the next state. Shared
        with search's table step (:mod:`nmt.search.table_step`)."""
        feat, attn = self.attend(h, enc)
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
        feats, attn = self.attend(out, enc)
        return feats, attn, DecoderState(hidden, None)

    def logits(self, feats: Tensor) -> Tensor:
        """``(..., hidden)`` -> ``(..., vocab)``."""
        if not isinstance(self.out, nn.Linear):  # int8 (nmt.models.quantize): its own kernel
            return self.out(self.pre_output(feats) if self.pre_output is not None else feats)
        return sliced_linear(*self.output_projection(feats))

    def output_projection(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The output layer as ``(x, weight, bias)`` with ``logits = x @ weight.T + bias``
        (``x (..., emb_dim or hidden)``, ``weight (vocab, same)``), for fused losses.

        Raises:
            NMTError: the output layer is int8 (:mod:`nmt.models.quantize`), whose ``weight``
                is a packed int8 tensor behind a method: an int8 model decodes, it does not train.
        """
        if not isinstance(self.out, nn.Linear):
            raise NMTError(
                "an int8 model (--quantize int8) can only decode: train or score the fp32 model"
            )
        if self.pre_output is not None:
            feats = self.pre_output(feats)
        return feats, self.out.weight, self.out.bias
