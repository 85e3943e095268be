"""Every kernel of nmt/ops equals its plain reference, in value and (where it has a backward)
in every gradient, checked in float64 by finite differences too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt import ops


def _f64(*shape, g: torch.Generator, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("slice_elements", [1, 40, 1 << 20])  # a row per slice, a few, all
def test_additive_scores_equal_the_plain_formula_and_its_gradients(slice_elements):
    g = torch.Generator().manual_seed(0)
    q, k, v = _f64(5, 3, 4, g=g), _f64(5, 6, 4, g=g), _f64(4, g=g)
    upstream = torch.randn(5, 3, 6, generator=g, dtype=torch.float64)

    fused = ops.additive_scores(q, k, v, slice_elements=slice_elements)
    plain = ops.additive_scores_reference(q, k, v)
    torch.testing.assert_close(fused, plain)
    got = torch.autograd.grad(fused, (q, k, v), upstream)
    want = torch.autograd.grad(plain, (q, k, v), upstream)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)

    def kernel(a, b, c):
        return ops.additive_scores(a, b, c, slice_elements=slice_elements)

    assert torch.autograd.gradcheck(kernel, (q, k, v))


def test_additive_reference_is_the_textbook_sum():
    """The reference itself: ``sum_a v_a tanh(q_a + k_a)`` written out with loops."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (_f64(*shape, g=g, grad=False) for shape in ((2, 1, 3), (2, 2, 3), (3,)))
    ref = ops.additive_scores_reference(q, k, v)
    for b in range(2):
        for s in range(2):
            want = sum(float(v[a]) * torch.tanh(q[b, 0, a] + k[b, s, a]).item() for a in range(3))
            assert ref[b, 0, s].item() == pytest.approx(want)


@pytest.mark.parametrize("bias", [True, False])
def test_sliced_linear_equals_linear(bias):
    """Two full 512-row slices and a ragged one, 2-d and 3-d features."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(2 * ops.OUTPUT_SLICE + 76, 8, generator=g)
    b = torch.randn(weight.size(0), generator=g) if bias else None
    for x in (torch.randn(5, 8, generator=g), torch.randn(2, 3, 8, generator=g)):
        torch.testing.assert_close(ops.sliced_linear(x, weight, b), F.linear(x, weight, b))
    # with autograd on it is F.linear itself, so gradients flow
    x = torch.randn(4, 8, generator=g, requires_grad=True)
    ops.sliced_linear(x, weight, b).sum().backward()
    torch.testing.assert_close(x.grad, weight.sum(0).expand(4, 8), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eps,bias,chunk", [(0.0, True, 1 << 21), (0.1, True, 10), (0.2, False, 7)])
def test_linear_cross_entropy_equals_its_reference(eps, bias, chunk):
    """Loss, NLL and all three gradients equal the reference on materialised logits,
    whichever way the rows are chunked; the custom backward passes gradcheck."""
    g = torch.Generator().manual_seed(0)
    x, w = _f64(13, 6, g=g), _f64(9, 6, g=g)
    b = _f64(9, g=g) if bias else None
    y = torch.randint(0, 9, (13,), generator=g)
    inputs = [t for t in (x, w, b) if t is not None]
    ref, ref_nll = ops.linear_cross_entropy_reference(x, w, b, y, eps)
    ref_grads = torch.autograd.grad(2.5 * ref, inputs)
    loss, nll = ops.linear_cross_entropy(x, w, b, y, eps, chunk_elements=chunk)
    grads = torch.autograd.grad(2.5 * loss, inputs)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-9)
    assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-9)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)

    def loss_only(*args):
        bias_arg = args[2] if bias else None
        return ops.linear_cross_entropy(args[0], args[1], bias_arg, y, eps, chunk)[0]

    assert torch.autograd.gradcheck(loss_only, tuple(inputs))


def test_linear_cross_entropy_reference_is_the_smoothed_distribution():
    """The reference's smoothing is ``(1 - eps) one_hot + eps / V``, summed over rows."""
    g = torch.Generator().manual_seed(2)
    x, w = _f64(4, 3, g=g, grad=False), _f64(5, 3, g=g, grad=False)
    y = torch.tensor([0, 4, 2, 2])
    loss, nll = ops.linear_cross_entropy_reference(x, w, None, y, 0.3)
    log_p = torch.log_softmax(x @ w.t(), dim=1)
    target = torch.full((4, 5), 0.3 / 5, dtype=torch.float64)
    target[torch.arange(4), y] += 0.7
    assert loss.item() == pytest.approx(-(target * log_p).sum().item())
    assert nll.item() == pytest.approx(-log_p[torch.arange(4), y].sum().item())


def test_linear_cross_entropy_runs_in_its_profiler_range():
    """nmt/profiling.py charges the fused loss by this range name, not by a class name."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ops.linear_cross_entropy(x, w, None, torch.tensor([1, 2, 3]))[0].backward()
    assert ops.LINEAR_CROSS_ENTROPY_RANGE in {e.name for e in prof.events()}


@pytest.mark.parametrize("feed", [0, 3])
def test_gru_from_a_gate_table_equals_the_gru_cell(feed):
    """Table row + feed projection + :func:`gru_from_input_gates` equals torch's GRU cell on
    ``[embedding; feed]``, and the gate-by-gate reference equals torch too."""
    g = torch.Generator().manual_seed(0)
    vocab, emb, hidden = 7, 5, 4
    cell = torch.nn.GRUCell(emb + feed, hidden).double()
    table_emb = torch.randn(vocab, emb, generator=g, dtype=torch.float64)
    prev = torch.tensor([3, 0, 6, 3])
    f = torch.randn(4, feed, generator=g, dtype=torch.float64)
    h = torch.randn(4, hidden, generator=g, dtype=torch.float64)
    x = torch.cat([table_emb[prev], f], dim=1)
    with torch.no_grad():
        want = cell(x, h)
        gates = ops.input_gate_table(table_emb, cell.weight_ih, cell.bias_ih)[prev]
        if feed:
            gates = gates + f @ cell.weight_ih[:, emb:].t()
        got = ops.gru_from_input_gates(gates, h, cell.weight_hh, cell.bias_hh)
        ref = ops.gru_cell_reference(
            x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
        )
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ref, want)
