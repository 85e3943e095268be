"""Recurrent blocks: the cell factory, packed whole-sequence runs, and the state helpers.

A recurrent state is either one tensor ``(layers * directions, batch, hidden)`` (RNN, GRU)
or LSTM's pair ``(h, c)`` of such tensors. Everything outside ``nmt/models`` treats it as an
opaque value; the helpers here (``map_state``, ``top_hidden`` ...) are the only code that looks
inside, so no caller ever needs to know which cell it is running.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from nmt.config_choices import Cell
from nmt.devices import to_device

RNNState = Tensor | tuple[Tensor, Tensor]

CELLS = Cell.values()  # the config's choices (nmt/config_choices.py)


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    layers: int,
    dropout: float = 0.0,
    bidirectional: bool = False,
) -> nn.RNNBase:
    """A batch-first torch RNN module (cuDNN on GPU); ``dropout`` acts between layers only."""
    kwargs = dict(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=layers,
        batch_first=True,
        # torch warns about inter-layer dropout on a single layer: there is nothing between.
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
    )
    if cell == "gru":
        return nn.GRU(**kwargs)
    if cell == "lstm":
        return nn.LSTM(**kwargs)
    if cell == "rnn":
        return nn.RNN(nonlinearity="tanh", **kwargs)
    raise ValueError(f"unknown cell {cell!r}")


def run_packed(
    rnn: nn.RNNBase, x: Tensor, lengths: Tensor, state: RNNState | None = None
) -> tuple[Tensor, RNNState]:
    """Run ``rnn`` over padded ``x (batch, len, in)`` so that padding never changes a result.

    Returns:
        outputs ``(batch, len, hidden * directions)`` (zeros at padded positions) and the final
        state at each row's true last token (first token for the backward direction).
    """
    # Packing wants the lengths on the host: free when the caller keeps them there (training
    # does), one device->host copy otherwise (decoding).
    host_lengths = lengths.cpu()
    if int(host_lengths.min()) < 1:
        raise ValueError("every sequence needs at least one token (got a length of 0)")
    # What pack_padded_sequence(enforce_sorted=False) and pad_packed_sequence do, with the
    # sort order made on the host and sent to the device without blocking: theirs copy it
    # there and back with a blocking copy each, and on a GPU each of those waits for the
    # whole queue (the results are identical).
    sorted_lengths, order = torch.sort(host_lengths, descending=True)
    order_dev = to_device(order, x.device)
    unorder_dev = to_device(torch.argsort(order), x.device)
    packed = pack_padded_sequence(x.index_select(0, order_dev), sorted_lengths, batch_first=True)
    # With its permutations attached, the RNN reorders ``state`` and ``final`` itself.
    packed = PackedSequence(packed.data, packed.batch_sizes, order_dev, unorder_dev)
    out, final = rnn(packed, state)
    plain = PackedSequence(out.data, out.batch_sizes)  # padded in sorted order, unsorted here
    out, _ = pad_packed_sequence(plain, batch_first=True, total_length=x.size(1))
    return out.index_select(0, unorder_dev), final


def map_state(fn: Callable[[Tensor], Tensor], state: RNNState) -> RNNState:
    """Apply ``fn`` to each tensor of a state (both halves of an LSTM state)."""
    if isinstance(state, tuple):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


def select_state(state: RNNState, index: Tensor) -> RNNState:
    """Reorder/select batch rows (dim 1) of a state, e.g. for beam search."""
    return map_state(lambda t: t.index_select(1, index), state)


def detach_state(state: RNNState) -> RNNState:
    """Cut the graph at a state (truncated back-propagation through time)."""
    return map_state(lambda t: t.detach(), state)


def top_hidden(state: RNNState) -> Tensor:
    """The top layer's hidden vector ``(batch, hidden)`` (h, not c, for an LSTM)."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


def zero_state(
    cell: str, layers: int, batch: int, hidden: int, device: torch.device, dtype: torch.dtype
) -> RNNState:
    h = torch.zeros(layers, batch, hidden, device=device, dtype=dtype)
    return (h, torch.zeros_like(h)) if cell == "lstm" else h


def merge_directions(state: RNNState, directions: int) -> RNNState:
    """``(layers * dirs, batch, h)`` -> ``(layers, batch, dirs * h)``: per layer, the forward
    and backward final vectors side by side (the layout a unidirectional decoder can take)."""
    if directions == 1:
        return state

    def merge(t: Tensor) -> Tensor:
        n, batch, h = t.shape
        t = t.view(n // directions, directions, batch, h)
        return t.permute(0, 2, 1, 3).reshape(n // directions, batch, directions * h)

    return map_state(merge, state)
