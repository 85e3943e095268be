"""int8 decoding on the CPU: a trained model's per-step matrix products in int8.

:func:`quantize_for_cpu` returns a copy of a translation model (a :class:`Seq2Seq`, or an
ensemble of them) whose hot layers run torch's dynamic quantization kernels (fbgemm / x86):
weights int8 with one scale per output row (per channel, symmetric), activations quantized
at every call from their own range (dynamic: no calibration data; 7 bits, torch's
``reduce_range``, so the int8 dot products cannot overflow), int32 accumulation, fp32
outputs. The copy keeps the model's contract (``encode``, ``init_state``, ``step``,
the same outputs), so searches, workers and ensembles run it unchanged.

Quantized, per translation model:

* ``decoder.out`` (and ``decoder.pre_output``): the output layer, ``vocab x hidden`` at
  every step of every hypothesis, the largest product of decoding;
* ``decoder.combine`` and ``decoder.attention.query_proj``: also run at every step;
* ``encoder.rnn`` and ``decoder.rnn`` when GRU or LSTM: the input and recurrent projections
  of every layer and direction. torch's quantized GRU/LSTM take packed sequences,
  bidirectional and multi-layer stacks and an initial state, as ``nn.GRU``/``nn.LSTM`` do
  (``tests/test_quantize.py`` checks each against the fp32 model).

Left in fp32:

* the embedding tables: lookups, nothing to multiply;
* ``nn.RNN`` (``model.cell=rnn``): torch has no quantized multi-layer RNN module (only a
  cell), so such a model gets its int8 linear layers only;
* ``attention.key_proj`` and the bridge: they run once per sentence, not per step (little
  time to gain), and the keys enter every step's scores, so their rounding would be paid at
  every step;
* ``attention.v``: one row, read as a tensor by the additive-score kernel.

The search's GRU gate table (:mod:`nmt.search.table_step`) needs fp32 GRU weights, so a
quantized decoder runs its own step. The activation scale is per call (one for the whole
batch), so an int8 translation can differ slightly with the sentences batched beside it.
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from nmt.errors import NMTError, first_line
from nmt.models.seq2seq import Seq2Seq
from nmt.quantize_scheme import check_scheme

# Submodules of a Seq2Seq that run at every decoder step (or over every source token).
_PER_STEP_LINEARS = (
    "decoder.out",
    "decoder.pre_output",
    "decoder.combine",
    "decoder.attention.query_proj",
)
_RECURRENT = ("encoder.rnn", "decoder.rnn")


def quantize_for_cpu(model: nn.Module, scheme: str = "int8") -> nn.Module:
    """A copy of ``model`` (a :class:`Seq2Seq` or a module holding some, such as an
    :class:`~nmt.search.ensemble.Ensemble`) in eval mode, its per-step layers in int8
    (see the module docstring); ``model`` itself is not changed.

    Raises:
        NMTError: no translation model inside, weights off the CPU or not fp32, or a torch
            without the dynamic quantization API.
    """
    check_scheme(scheme)
    names = int8_layer_names(model)
    if not names:
        raise NMTError("only translation models (seq2seq, or an ensemble of them) can be quantized")
    for p in model.parameters():
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise NMTError(
                f"int8 quantization starts from fp32 weights on the CPU, not {p.dtype} on "
                f"{p.device.type}: load the model on the CPU"
            )
    return _quantize_dynamic(model, names).eval()


def int8_layer_names(model: nn.Module) -> list[str]:
    """Full names of the submodules :func:`quantize_for_cpu` turns into int8."""
    names = []
    for prefix, module in model.named_modules():
        if not isinstance(module, Seq2Seq):
            continue
        lead = f"{prefix}." if prefix else ""
        for name in _PER_STEP_LINEARS + _RECURRENT:
            try:
                layer = module.get_submodule(name)
            except AttributeError:  # no attention, no pre-output layer
                continue
            # type(), not isinstance: nn.RNN is neither, and torch has no int8 module for it.
            if type(layer) in (nn.Linear, nn.GRU, nn.LSTM):
                names.append(lead + name)
    return names


def is_quantized(model: nn.Module) -> bool:
    """True when some submodule of ``model`` runs torch's quantized kernels."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def _quantize_dynamic(model: nn.Module, names: list[str]) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` of the named submodules, per-channel int8."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        raise NMTError(
            f"--quantize int8 needs torch.ao.quantization.quantize_dynamic, which torch "
            f"{torch.__version__} no longer has: translate without --quantize"
        ) from None
    with warnings.catch_warnings():
        # torch 2.13 deprecates eager-mode quantization and quantized tensors in favour of
        # torchao, whose configs quantize linear layers only (no GRU/LSTM); the API still
        # works, and whoever passes --quantize cannot act on these two warnings. Nothing
        # else is silenced.
        warnings.filterwarnings(
            "ignore",
            message=re.escape("torch.ao.quantization is deprecated"),
            category=DeprecationWarning,
        )
        warnings.filterwarnings(
            "ignore",
            message=re.escape("torch.quantize_per_tensor, torch.quantize_per_channel"),
            category=UserWarning,
        )
        try:
            return quantize_dynamic(
                model, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8
            )
        except RuntimeError as err:  # e.g. a build without an int8 engine (fbgemm, x86)
            raise NMTError(
                f"int8 quantization failed in torch {torch.__version__} ({first_line(err)}): "
                "translate without --quantize"
            ) from None
