"""The output layer ``x @ weight.T + bias`` in vocabulary slices on the CPU.

Measured: one ``(n, 256) x (256, 5470)`` product ran at ~35-47 GFLOP/s, the same product in
512-row slices at ~55-75 (beam-5 decoding 78 -> 103 sent/s), docs/performance.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

OUTPUT_SLICE = 512  # vocabulary rows per slice: torch's MKL runs these at the matmul roofline


def sliced_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x (..., d) @ weight (V, d).T + bias (V,)`` -> ``(..., V)``, equal to ``F.linear``.

    The slices apply on the CPU without autograd (fp32, no autocast): each 512-row slice of
    the product is written in place into the ``(n, V)`` result. Everywhere else (a backward
    to build, a GPU, autocast's casts) it is ``F.linear`` itself, the reference.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if (
        needs_grad
        or x.device.type != "cpu"
        or x.dtype != weight.dtype
        or torch.is_autocast_enabled("cpu")
    ):
        return F.linear(x, weight, bias)
    lead, d = x.shape[:-1], x.size(-1)
    x2 = x.reshape(-1, d)
    vocab = weight.size(0)
    out = x2.new_empty(x2.size(0), vocab)
    for v in range(0, vocab, OUTPUT_SLICE):
        w = weight[v : v + OUTPUT_SLICE].t()
        part = out[:, v : v + OUTPUT_SLICE]
        if bias is None:
            torch.mm(x2, w, out=part)
        else:
            torch.addmm(bias[v : v + OUTPUT_SLICE], x2, w, out=part)
    return out.view(*lead, vocab)
