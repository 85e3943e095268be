"""Networks: embeddings, RNN blocks, encoder, attention, decoder, seq2seq, char LM, builder.

Models return log-probabilities and attention only; see docs/architecture.md for the contract.
"""

from nmt.models.builder import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
