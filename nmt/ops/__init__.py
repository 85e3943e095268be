"""Speed kernels: each one function with its plain reference beside it.

The model, the loss and the profiler call these by name; each module says in one line what
its kernel measured against its reference (docs/performance.md has the runs), and
``tests/test_ops.py`` checks every kernel against its reference (and, where it has a
backward, with ``torch.autograd.gradcheck``).

* :func:`additive_scores` -- Bahdanau scores ``v . tanh(q + k)`` through sigmoid, in
  cache-sized slices, recomputed in backward (reference :func:`additive_scores_reference`).
* :func:`sliced_linear` -- the output layer in 512-row vocabulary slices on the CPU
  (reference ``torch.nn.functional.linear``).
* :func:`linear_cross_entropy` -- output layer + label-smoothed cross-entropy without the
  ``(N, V)`` logits, gradients formed in the forward pass (reference
  :func:`linear_cross_entropy_reference`).
* :func:`input_gate_table` and :func:`gru_from_input_gates` -- a 1-layer GRU step whose
  embedding half of the input projection is looked up in a per-token table (reference
  :func:`gru_cell_reference`).
"""

from nmt.ops.additive_attention import additive_scores, additive_scores_reference
from nmt.ops.cross_entropy import (
    LINEAR_CROSS_ENTROPY_RANGE,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from nmt.ops.gru_gates import gru_cell_reference, gru_from_input_gates, input_gate_table
from nmt.ops.output_layer import OUTPUT_SLICE, sliced_linear

__all__ = [
    "LINEAR_CROSS_ENTROPY_RANGE",
    "OUTPUT_SLICE",
    "additive_scores",
    "additive_scores_reference",
    "gru_cell_reference",
    "gru_from_input_gates",
    "input_gate_table",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "sliced_linear",
]
