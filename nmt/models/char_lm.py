"""Character-level language model: the seq2seq decoder without a source (no attention).

It reuses :class:`~nmt.models.decoder.Decoder` (embedding, RNN stack, output layer), so the
same code runs the translation decoder and the LM. The state is an opaque recurrent state
carried across BPTT chunks by the trainer and cut with :meth:`CharLM.detach_state`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.models.decoder import Decoder, DecoderState
from nmt.models.embeddings import Embeddings
from nmt.models.rnn import RNNState, detach_state, zero_state


class CharLM(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        layers: int = 3,
        emb_dim: int = 128,
        hidden_dim: int = 512,
        dropout: float = 0.2,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.cell, self.layers, self.hidden_dim = cell, layers, hidden_dim
        embed = Embeddings(vocab_size, emb_dim, dropout)
        self.decoder = Decoder(
            embed, vocab_size, cell, hidden_dim, layers, dropout, tie=tie_embeddings
        )
        self.tie_embeddings = tie_embeddings

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> RNNState:
        """Zeros: ``(layers, batch, hidden)`` (a pair for LSTM)."""
        weight = self.decoder.out.weight
        return zero_state(
            self.cell, self.layers, batch, self.hidden_dim, torch.device(device), weight.dtype
        )

    def detach_state(self, state: RNNState) -> RNNState:
        """The same values without their history (truncated BPTT at chunk borders)."""
        return detach_state(state)

    def forward(self, tokens: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """``tokens (batch, len)`` -> log-probs of the next tokens ``(batch, len, vocab)`` and
        the state after the last token."""
        if state is None:
            state = self.init_state(tokens.size(0), tokens.device)
        feats, _, out = self.decoder.features(tokens, DecoderState(state), None)
        return torch.log_softmax(self.decoder.logits(feats), dim=-1), out.hidden

    def step(self, prev: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """``prev (batch,)`` -> log-probs ``(batch, vocab)`` and the next state."""
        feat, _, out = self.decoder.step(prev, DecoderState(state), None)
        return torch.log_softmax(self.decoder.logits(feat), dim=-1), out.hidden

    def embedding_layers(self) -> dict[str, Embeddings]:
        return {}

    def tied_sides(self) -> set[str]:
        return set()
