"""The encoder-decoder: everything a trainer or a search needs, and nothing else.

The model maps tokens to log-probabilities (and attention weights). Losses, optimizers,
configs and files live elsewhere; searches drive it through :meth:`Seq2Seq.step`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.config import PAD_ID
from nmt.models.decoder import Decoder, DecoderState
from nmt.models.embeddings import Embeddings
from nmt.models.encoder import Bridge, Encoder, EncoderOutput


class Seq2Seq(nn.Module):
    """RNN encoder-decoder with optional attention. Build it with
    :func:`nmt.models.builder.build_model`, which validates the options."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        cell: str = "gru",
        attention: str = "bahdanau",
        input_feeding: bool = False,
        attentional_vector: str = "tanh",
        layers: int = 1,
        bidirectional: bool = True,
        emb_dim: int = 256,
        hidden_dim: int = 256,
        dropout: float = 0.2,
        bridge: str = "linear",
        tie_embeddings: bool = False,
        share_embeddings: bool = False,
    ) -> None:
        super().__init__()
        src_embed = Embeddings(src_vocab_size, emb_dim, dropout)
        tgt_embed = src_embed if share_embeddings else Embeddings(tgt_vocab_size, emb_dim, dropout)
        self.encoder = Encoder(src_embed, cell, hidden_dim, layers, bidirectional, dropout)
        self.bridge = Bridge(bridge, cell, hidden_dim)
        self.decoder = Decoder(
            tgt_embed,
            tgt_vocab_size,
            cell,
            hidden_dim,
            layers,
            dropout,
            attention=attention,
            input_feeding=input_feeding,
            attentional_vector=attentional_vector,
            memory_dim=hidden_dim,
            tie=tie_embeddings,
        )
        self.tie_embeddings = tie_embeddings

    # --- the contract (docs/architecture.md) --------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """``src (batch, src_len)``, ``src_lengths (batch,)`` -> EncoderOutput (attention keys
        included, so decoder steps only do the query side)."""
        memory, final = self.encoder(src, src_lengths)
        mask = src != PAD_ID
        return EncoderOutput(memory, mask, src_lengths, self.decoder.precompute(memory), final)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        hidden = self.bridge(enc.final)
        feed = None
        if self.decoder.input_feeding:
            feed = enc.memory.new_zeros(enc.memory.size(0), self.decoder.hidden_dim)
        return DecoderState(hidden, feed)

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        """Select/repeat/reorder the rows of ``state`` (``index (n,)`` of batch rows)."""
        return state.index_select(index)

    def step(
        self, prev_tokens: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """``prev_tokens (batch,)`` -> log-probs ``(batch, vocab)``, attention
        ``(batch, src_len)`` | None, next state."""
        feat, attn, state = self.decoder.step(prev_tokens, state, enc)
        return self.log_probs(feat), attn, state

    def features(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: ``tgt_in (batch, tgt_len)`` -> features ``(batch, tgt_len, hidden)``
        and attention ``(batch, tgt_len, src_len)`` | None."""
        enc = self.encode(src, src_lengths)
        feats, attn, _ = self.decoder.features(tgt_in, self.init_state(enc), enc)
        return feats, attn

    def logits(self, hidden: Tensor) -> Tensor:
        return self.decoder.logits(hidden)

    def output_projection(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(x, weight, bias)`` with ``logits = x @ weight.T + bias`` (for fused losses)."""
        return self.decoder.output_projection(hidden)

    def log_probs(self, hidden: Tensor) -> Tensor:
        return torch.log_softmax(self.decoder.logits(hidden), dim=-1)

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """-> log-probs ``(batch, tgt_len, vocab)`` and attention (see :meth:`features`)."""
        feats, attn = self.features(src, src_lengths, tgt_in)
        return self.log_probs(feats), attn

    # --- for embeddings.apply_pretrained ------------------------------------------------

    def embedding_layers(self) -> dict[str, Embeddings]:
        return {"src": self.encoder.embed, "tgt": self.decoder.embed}

    def tied_sides(self) -> set[str]:
        """Sides whose embedding table is also the output matrix."""
        if not self.tie_embeddings:
            return set()
        shared = self.encoder.embed is self.decoder.embed
        return {"src", "tgt"} if shared else {"tgt"}
