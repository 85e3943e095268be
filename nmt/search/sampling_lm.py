"""Sampling text from a character language model (through ``model.forward`` / ``model.step``)."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.errors import NMTError


@torch.inference_mode()
def sample_lm(
    model,
    prompt_ids: list[int],
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    banned_ids: tuple[int, ...] = (),
) -> list[int]:
    """Continue ``prompt_ids`` by ``length`` sampled ids (the prompt is not repeated).

    The prompt is read in one ``forward`` call; each new id then costs one ``step``.
    ``temperature`` divides the log-probabilities (``0`` = always the most probable id);
    ``top_k > 0`` samples among the k most probable ids only. Pass a seeded ``generator``
    (on the model's device) for reproducible samples. ``banned_ids`` (for a
    :class:`CharVocab`: padding and unknown) are never produced.
    """
    if not prompt_ids:
        raise NMTError("sampling from the language model needs a prompt of at least one symbol")
    if not 0 <= temperature < float("inf"):
        raise NMTError(f"the sampling temperature must be a finite number >= 0, got {temperature}")
    if top_k < 0:
        raise NMTError(f"the sampling top_k must be >= 0 (0 = no limit), got {top_k}")
    device = next(model.parameters()).device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    log_probs, state = model(prompt)
    scores = log_probs[:, -1]  # (1, V): the distribution of the first new id
    banned = list(banned_ids)
    out: list[int] = []
    for _ in range(length):
        if banned:  # in place: every step's scores are a fresh tensor from the model
            scores[:, banned] = float("-inf")
        token = _pick(scores, temperature, top_k, generator)
        out.append(int(token))
        scores, state = model.step(token.view(1), state)
    return out


def _pick(
    scores: Tensor, temperature: float, top_k: int, generator: torch.Generator | None
) -> Tensor:
    """One id from ``scores (1, V)`` log-probabilities."""
    scores = scores.float()
    if temperature == 0:
        return scores.argmax(dim=-1)[0]
    scores = scores / temperature
    if 0 < top_k < scores.size(-1):
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[0, 0]
