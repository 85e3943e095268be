"""Where a training step's time goes: encoder, decoder RNN, attention, output layer + loss,
optimizer -- forward and backward together, from ``torch.profiler``.

1. Forward hooks open a ``record_function`` range around each part's module, so every
   forward op is labelled with the innermost part it ran in.
2. Each forward op that builds an autograd node records that node's sequence number; the
   backward of the node (``autograd::engine::evaluate_function: ...``) carries the same
   number, so its time is charged to the same part.
3. The fused output layer + loss runs in its own profiler range
   (:data:`nmt.ops.LINEAR_CROSS_ENTROPY_RANGE`), the optimizer in torch's
   (``Optimizer.step``/``zero_grad``): both are recognised by those range names.
Self times of all events are summed per part; what is in none of them (gradient clipping,
bookkeeping, Python between ops) is ``other``.

:func:`op_time_summary` is the view for a GPU: the host's and the device's time per step
and the ops that take most of the device (a step whose host time exceeds its device time
is bound by launching kernels, not by running them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from nmt.ops import LINEAR_CROSS_ENTROPY_RANGE

PREFIX = "part::"
BACKWARD = "autograd::engine::evaluate_function:"


def seq2seq_parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The parts of a :class:`~nmt.models.seq2seq.Seq2Seq`, by the name the split uses."""
    dec = model.decoder
    parts = {
        "embeddings": [model.encoder.embed, dec.embed],
        "encoder": [model.encoder, model.bridge],
        "decoder RNN": [dec.rnn],
        "attention": [m for m in (dec.attention, dec.combine) if m is not None],
    }
    return {name: mods for name, mods in parts.items() if mods}


def _label(module: nn.Module, name: str, handles: list) -> None:
    stack: list = []

    def enter(_mod, _inputs):
        rf = record_function(PREFIX + name)
        rf.__enter__()
        stack.append(rf)

    def leave(_mod, _inputs, _output):
        stack.pop().__exit__(None, None, None)

    handles.append(module.register_forward_pre_hook(enter))
    handles.append(module.register_forward_hook(leave))


def _part_of(event, by_seq: dict[int, str]) -> str | None:
    """The innermost labelled range above ``event`` (``event`` included)."""
    e = event
    while e is not None:
        name = e.name
        if name.startswith(PREFIX):
            return name[len(PREFIX) :]
        if name == LINEAR_CROSS_ENTROPY_RANGE:
            return "output layer + loss"
        if name.startswith("Optimizer."):
            return "optimizer"
        if name.startswith(BACKWARD) and e.sequence_nr in by_seq:
            return by_seq[e.sequence_nr]
        e = e.cpu_parent
    return None


def step_time_split(
    model: nn.Module, run_step: Callable[[object], None], batches: list
) -> dict[str, float]:
    """Run ``run_step(batch)`` for each batch under the profiler; return the fraction of
    the profiled CPU time spent in each part (fractions sum to 1)."""
    handles: list = []
    for name, modules in seq2seq_parts(model).items():
        for module in modules:
            _label(module, name, handles)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                run_step(batch)
    finally:
        for h in handles:
            h.remove()
    events = list(prof.events())
    # Forward ops name the part their autograd node belongs to (step 2).
    by_seq: dict[int, str] = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith(BACKWARD):
            part = _part_of(e, {})
            if part is not None:
                by_seq.setdefault(e.sequence_nr, part)
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith(PREFIX):
            continue  # a part range's own time is the labelling hooks' overhead: left out
        # (LINEAR_CROSS_ENTROPY_RANGE's own time is the fused loss's Python chunk loop: the
        # loss's own, so it is counted)
        totals[_part_of(e, by_seq) or "other"] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    # 4 decimals: a tiny model's optimizer share on a loaded machine reads 0.0 at 3
    return {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def op_time_summary(
    run_step: Callable[[object], None], batches: list, cuda: bool, top: int = 10
) -> dict:
    """Run ``run_step(batch)`` for each batch under the profiler (CPU activity, and the
    GPU's when ``cuda``); return milliseconds per step on the host (self time of every op)
    and on the device (every kernel and copy), and the ``top`` ops by device time (by host
    time without ``cuda``), each with its calls, host and device milliseconds per step."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for batch in batches:
            run_step(batch)
        if cuda:
            torch.cuda.synchronize()  # the last step's kernels belong to the profile
    steps = max(1, len(batches))
    rows = prof.key_averages()
    # As torch's own table sums them: a user range's device time only repeats its kernels'.
    kernels = [
        r
        for r in rows
        if r.device_type != DeviceType.CPU and not getattr(r, "is_user_annotation", False)
    ]
    ops = [r for r in rows if r.device_type == DeviceType.CPU]
    by = (lambda r: r.self_device_time_total) if cuda else (lambda r: r.self_cpu_time_total)

    def ms(us: float) -> float:
        return round(us / 1000 / steps, 3)

    return {
        "steps": len(batches),
        "host_ms_per_step": ms(sum(r.self_cpu_time_total for r in rows)),
        "device_ms_per_step": ms(sum(r.self_device_time_total for r in kernels)),
        "top_ops": [
            {
                "name": r.key,
                "calls_per_step": round(r.count / steps, 2),
                "host_ms_per_step": ms(r.self_cpu_time_total),
                "device_ms_per_step": ms(r.self_device_time_total),
            }
            for r in sorted(ops, key=by, reverse=True)[:top]
        ],
    }
