"""Search: greedy, beam and sampling, all through ``model.step``; the raw-text Translator.

``search(model, src, src_lengths, decode_cfg)`` is the one entry point; it returns, per
sentence, its n-best :class:`Hypothesis` list, best first.
"""

from __future__ import annotations

from torch import Tensor

from nmt.config import DecodeConfig
from nmt.errors import ConfigError
from nmt.search.beam import beam_search
from nmt.search.greedy import greedy_search
from nmt.search.hypothesis import Hypothesis
from nmt.search.sampling import sample_search

__all__ = ["Hypothesis", "beam_search", "greedy_search", "sample_search", "search"]


def search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    decode_cfg: DecodeConfig,
    return_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Decode a batch ``src (B, S)`` with the method ``decode_cfg.method`` names.

    Beam search with ``beam_size == 1`` and one output runs the (identical, cheaper) greedy
    loop.
    """
    method = decode_cfg.method
    if method == "greedy" or (
        method == "beam" and decode_cfg.beam_size <= 1 and decode_cfg.n_best <= 1
    ):
        return greedy_search(model, src, src_lengths, decode_cfg, return_attention)
    if method == "beam":
        return beam_search(model, src, src_lengths, decode_cfg, return_attention)
    if method == "sample":
        return sample_search(model, src, src_lengths, decode_cfg, return_attention)
    raise ConfigError(f"decode.method={method!r} is unknown: use beam, greedy or sample")
