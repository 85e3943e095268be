"""The source side: embeddings -> (bi)directional RNN over packed sequences -> memory.

Also the bridge that turns the encoder's final states into the decoder's initial state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.models.embeddings import Embeddings
from nmt.models.rnn import RNNState, make_rnn, map_state, merge_directions, run_packed


@dataclass
class EncoderOutput:
    """What the decoder needs from the source, for every decoder step.

    Attributes:
        memory: ``(batch, src_len, hidden)`` encoder outputs (zeros at padding).
        mask: ``(batch, src_len)`` bool, True for real tokens.
        lengths: ``(batch,)`` source lengths.
        keys: ``(batch, src_len, key_dim)`` the source side of every attention score,
            computed from ``memory`` once (``Attention.precompute``: ``W_k m + b``,
            ``W m`` or ``m``, what the query is compared with); None without attention.
        final: the encoder's final state, directions merged: ``(layers, batch, hidden)``
            (a pair for LSTM).
    """

    memory: Tensor
    mask: Tensor
    lengths: Tensor
    keys: Tensor | None
    final: RNNState

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Select/repeat/reorder batch rows (beam search, finished rows leaving the batch)."""
        return EncoderOutput(
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            lengths=self.lengths.index_select(0, index),
            keys=None if self.keys is None else self.keys.index_select(0, index),
            final=map_state(lambda t: t.index_select(1, index), self.final),
        )


class Encoder(nn.Module):
    """Embeddings and a multi-layer RNN; bidirectional uses ``hidden // 2`` per direction so
    the memory is always ``hidden`` wide."""

    def __init__(
        self,
        embed: Embeddings,
        cell: str,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.directions = 2 if bidirectional else 1
        self.rnn = make_rnn(
            cell, embed.emb_dim, hidden // self.directions, layers, dropout, bidirectional
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, RNNState]:
        """``src (batch, src_len)``, ``lengths (batch,)`` -> memory ``(batch, src_len, hidden)``
        and the final state ``(layers, batch, hidden)`` (directions concatenated)."""
        out, final = run_packed(self.rnn, self.embed(src), lengths)
        return self.dropout(out), merge_directions(final, self.directions)


class Bridge(nn.Module):
    """Encoder final state -> decoder initial state.

    ``linear``: ``tanh(W s + b)`` per layer (one matrix shared by the layers; LSTM's cell
    state gets its own). ``none``: the merged final state as it is -- the encoder and decoder
    have the same layer count and width by construction, so the shapes always match.
    """

    def __init__(self, kind: str, cell: str, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.h = nn.Linear(hidden, hidden)
            self.c = nn.Linear(hidden, hidden) if cell == "lstm" else None

    def forward(self, final: RNNState) -> RNNState:
        if self.kind == "none":
            return final
        if isinstance(final, tuple):
            return (torch.tanh(self.h(final[0])), torch.tanh(self.c(final[1])))
        return torch.tanh(self.h(final))
