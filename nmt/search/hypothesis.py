"""What every search returns, and the scoring rules (length and coverage penalties) they share."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Hypothesis:
    """One output sentence.

    Attributes:
        tokens: target ids without BOS/EOS.
        score: the ranking score (log-probability, length-penalized as the config asks).
        attention: ``(T, S)`` attention weights of the T emitted steps (EOS included) over the
            S real source tokens, or None when not requested or the model has no attention.
    """

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def length_penalty(length: Tensor | int, alpha: float, normalize: bool) -> Tensor | float:
    """The divisor of a hypothesis' log-probability.

    ``normalize`` divides by the length; otherwise GNMT's ``((5 + len) / 6) ** alpha``
    (alpha 0 = raw log-probability). ``length`` counts the emitted tokens, EOS included.
    """
    if normalize:
        return length if isinstance(length, int) else length.float()
    if alpha == 0.0:
        return 1.0
    if isinstance(length, int):
        return ((5.0 + length) / 6.0) ** alpha
    return ((5.0 + length.float()) / 6.0) ** alpha


def coverage_penalty(coverage: Tensor, src_mask: Tensor, beta: float) -> Tensor:
    """GNMT coverage penalty ``beta * sum_i log(min(sum_t a_ti, 1))`` over real source tokens.

    Args:
        coverage: ``(N, S)`` attention summed over the emitted steps.
        src_mask: ``(N, S)`` True for real source tokens.
    Returns:
        ``(N,)`` penalties (<= 0) to add to the normalized scores.
    """
    clipped = coverage.clamp(min=1e-10, max=1.0).log()
    return beta * clipped.masked_fill(~src_mask, 0.0).sum(dim=1)


def max_output_lengths(src_lengths: Tensor, a: float, b: int) -> Tensor:
    """Per sentence, the most tokens (EOS excluded) a search may emit: ``a * src_len + b``."""
    lengths = (src_lengths.float() * a + b).floor().long()
    return lengths.clamp(min=1)
