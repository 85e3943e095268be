"""Search: greedy, beam and sampling, all through ``model.step``; the raw-text Translator.

``search(model, src, src_lengths, decode_cfg)`` is the one entry point; it returns, per
sentence, its n-best :class:`Hypothesis` list, best first. Target prefixes
(:mod:`nmt.search.prefix`) work with every method; terminology constraints
(:mod:`nmt.search.lexical_constraints`) need beam search.
"""

from __future__ import annotations

from torch import Tensor

from nmt.config import DecodeConfig
from nmt.errors import ConfigError
from nmt.search.beam import beam_search
from nmt.search.greedy import greedy_search
from nmt.search.hypothesis import Hypothesis
from nmt.search.sampling import sample_search

__all__ = [
    "Hypothesis",
    "beam_search",
    "check_guidance",
    "greedy_search",
    "sample_search",
    "search",
]


def check_guidance(decode_cfg: DecodeConfig, has_constraints: bool) -> None:
    """Refuse terms with a search method that cannot follow them (every method follows
    target prefixes).

    Raises:
        ConfigError: terms with greedy search or sampling.
    """
    method = decode_cfg.method
    if method in ("greedy", "sample") and has_constraints:
        how = "greedy search" if method == "greedy" else "sampling"
        raise ConfigError(
            f"terms need beam search: {how} cannot plan where a term goes; use "
            f"--beam 5 (decode.method=beam) instead of --{method}"
        )


def search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    decode_cfg: DecodeConfig,
    return_attention: bool = False,
    prefixes: list[list[int]] | None = None,
    constraints: list[list[list[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """Decode a batch ``src (B, S)`` with the method ``decode_cfg.method`` names.

    ``prefixes``: per sentence, target token ids (no EOS) its output must start with
    (``[]`` for none). ``constraints``: per sentence, token-id phrases its output must
    contain (beam search only). Beam search with ``beam_size == 1`` and one output runs the
    (identical, cheaper) greedy loop, unless there are constraints.
    """
    if prefixes is not None and not any(prefixes):
        prefixes = None
    if constraints is not None and not any(any(p) for p in constraints):
        constraints = None
    check_guidance(decode_cfg, constraints is not None)
    method = decode_cfg.method
    if method == "greedy" or (
        method == "beam"
        and decode_cfg.beam_size <= 1
        and decode_cfg.n_best <= 1
        and constraints is None
    ):
        return greedy_search(model, src, src_lengths, decode_cfg, return_attention, prefixes)
    if method == "beam":
        return beam_search(
            model, src, src_lengths, decode_cfg, return_attention, prefixes, constraints
        )
    if method == "sample":
        return sample_search(
            model, src, src_lengths, decode_cfg, return_attention, prefixes=prefixes
        )
    raise ConfigError(f"decode.method={method!r} is unknown: use beam, greedy or sample")
