"""``run_packed`` (host-side sort, permutations attached) against torch's own packing:
outputs, final states and gradients identical for every cell, depth, direction, length
pattern, with and without an initial state."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.models.rnn import make_rnn, run_packed

IN, HIDDEN, WIDTH = 4, 5, 6
LENGTHS = {
    "unsorted": [3, 6, 1, 6, 2],
    "sorted": [6, 4, 4, 2],
    "equal": [5, 5, 5],
    "one row": [4],
}


def torch_packed(rnn, x, lengths, state):
    """What run_packed replaces: pack_padded_sequence(enforce_sorted=False) + pad_packed."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = rnn(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, final


def flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def outputs_and_grads(run, rnn, x, lengths, state, weights):
    """One run's output, final state and the gradients of a fixed weighted sum of both with
    respect to the input, the initial state and every parameter."""
    x = x.clone().requires_grad_()
    state = None if state is None else tuple(s.clone().requires_grad_() for s in state)
    given = None if state is None else state if len(state) == 2 else state[0]
    out, final = run(rnn, x, lengths, given)
    results = [out, *flat(final)]
    loss = sum((r * w).sum() for r, w in zip(results, weights, strict=True))
    wrt = [x, *(state or ()), *rnn.parameters()]
    return results, torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize(
    ("cell", "layers", "bidirectional"),
    list(itertools.product(["gru", "lstm", "rnn"], [1, 3], [False, True])),
)
def test_run_packed_matches_torch_packing(cell, layers, bidirectional):
    torch.manual_seed(0)
    rnn = make_rnn(cell, IN, HIDDEN, layers, bidirectional=bidirectional)
    n_states = layers * (2 if bidirectional else 1)
    for (pattern, lengths), with_state in itertools.product(LENGTHS.items(), [False, True]):
        batch = len(lengths)
        x = torch.randn(batch, WIDTH, IN)
        halves = 2 if cell == "lstm" else 1
        state = (
            tuple(torch.randn(n_states, batch, HIDDEN) for _ in range(halves))
            if with_state
            else None
        )
        out_w = torch.randn(batch, WIDTH, HIDDEN * (2 if bidirectional else 1))
        weights = [out_w, *(torch.randn(n_states, batch, HIDDEN) for _ in range(halves))]
        lengths = torch.tensor(lengths)
        ours, our_grads = outputs_and_grads(run_packed, rnn, x, lengths, state, weights)
        ref, ref_grads = outputs_and_grads(torch_packed, rnn, x, lengths, state, weights)
        case = f"{pattern}, initial state {with_state}"
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True)), case
        assert all(torch.equal(a, b) for a, b in zip(our_grads, ref_grads, strict=True)), case
        assert not ours[0][lengths.unsqueeze(1) <= torch.arange(WIDTH)].any(), case  # padding


def test_run_packed_refuses_an_empty_sequence():
    rnn = make_rnn("gru", IN, HIDDEN, 1)
    with pytest.raises(ValueError, match="length of 0"):
        run_packed(rnn, torch.randn(2, 3, IN), torch.tensor([3, 0]))
