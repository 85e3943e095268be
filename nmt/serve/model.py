"""The served model: a run folder loaded for translation, and what ``GET /models`` says of it.

Loading goes through :func:`nmt.inference.load_translation_model`, which reads checkpoints
with :func:`nmt.train.checkpoint.load_checkpoint` only: ``torch.load(weights_only=True)``
after a CRC check, so a crafted file cannot run code in the server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmt.devices import resolve_device
from nmt.errors import ConfigError
from nmt.inference import load_lexical_table, load_translation_model, resolve_checkpoint
from nmt.models.quantize import is_quantized, quantize_for_cpu
from nmt.quantize_scheme import quantize_device
from nmt.search.translator import Translator

log = logging.getLogger(__name__)

MODEL_KEYS = (
    "arch",
    "cell",
    "attention",
    "layers",
    "bidirectional",
    "emb_dim",
    "hidden_dim",
    "input_feeding",
)


@dataclass
class ServedModel:
    """A Translator and its description (``GET /models``)."""

    translator: Translator
    info: dict[str, Any]


def load_served_model(
    run_dir: str | Path,
    device: str = "auto",
    workers: int | None = None,
    max_src_len: int = 250,
    quantize: str | None = None,
    batch_threads: int | None = None,
) -> ServedModel:
    """Load a run folder (its ``best.pt``, else ``last.pt``) or a checkpoint file.

    Args:
        workers: CPU processes decoding each large call's batches in parallel
            (``decode.workers``; default: the checkpoint's).
        batch_threads: threads of the decoding thread searching those batches in parallel
            (``decode.batch_threads``; default: the checkpoint's).
        quantize: ``"int8"``: decode on the CPU with int8 layers (:mod:`nmt.models.quantize`).

    Raises:
        NMTError: the checkpoint is missing, unsafe, damaged or not a translation model;
            ConfigError for a bad ``--device``, ``--workers``, ``--batch-threads``,
            ``--max-src-len`` or ``--quantize`` (int8 with cuda).
    """
    for name, value in (("--workers", workers), ("--batch-threads", batch_threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value})")
    if max_src_len < 1:
        raise ConfigError(f"--max-src-len must be at least 1 (got {max_src_len})")
    dev = resolve_device(quantize_device(quantize, device), "--device")
    model, src_tok, tgt_tok, decode, cfg = load_translation_model(run_dir, [], dev)
    # Quantized here, not by load_translation_model: /models reports the trained model's
    # parameter count, which int8 layers hide from parameters().
    parameters = sum(p.numel() for p in model.parameters())
    if quantize:
        model = quantize_for_cpu(model, quantize)
    if workers is not None:
        decode = dataclasses.replace(decode, workers=workers)
    if batch_threads is not None:
        decode = dataclasses.replace(decode, batch_threads=batch_threads)
    if decode.workers > 1 and decode.batch_threads > 1:
        raise ConfigError(
            f"decoding processes ({decode.workers}) and batch threads ({decode.batch_threads}) "
            "both split the batches: give --workers 1 or --batch-threads 1"
        )
    # A run trained with decode.shortlist set decodes with it here too.
    lexical = load_lexical_table(run_dir, cfg, src_tok, tgt_tok) if decode.shortlist else None
    translator = Translator(
        model, src_tok, tgt_tok, decode, dev, max_src_len, warn=log.warning, lexical=lexical
    )
    return ServedModel(translator, describe(translator, run_dir, cfg, parameters))


def describe(
    translator: Translator,
    path: str | Path | None = None,
    cfg: Any = None,
    parameters: int | None = None,
) -> dict:
    """Name, checkpoint, architecture, vocabulary sizes, parameters (``parameters``: those
    of the trained model, which an int8 one hides from ``parameters()``), quantization,
    decoding defaults and the test scores of the run folder's ``eval/results.json`` (when
    there is one)."""
    info: dict[str, Any] = {"name": "model", "checkpoint": None}
    if path is not None:
        checkpoint = resolve_checkpoint(path)
        folder = Path(path) if Path(path).is_dir() else checkpoint.parent
        info.update(name=folder.resolve().name, checkpoint=str(checkpoint))
        info["scores"] = eval_scores(folder / "eval" / "results.json")
    if cfg is not None:
        info["model"] = {key: _plain(cfg.model[key]) for key in MODEL_KEYS}
    info["vocab"] = {"src": len(translator.src_tok), "tgt": len(translator.tgt_tok)}
    if parameters is None:
        parameters = sum(p.numel() for p in translator.model.parameters())
    info["parameters"] = parameters
    info["quantize"] = "int8" if is_quantized(translator.model) else None
    info["decode"] = {k: _plain(v) for k, v in dataclasses.asdict(translator.cfg).items()}
    return info


def eval_scores(path: Path) -> dict[str, dict[str, float]]:
    """BLEU and chrF per test split of an ``nmt-evaluate`` results file ({} without one, or
    with one of a quantized model's or an ensemble's scores)."""
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        # int8 or ensemble scores (nmt-evaluate --out RUN/eval) are not the run's own
        if results.get("quantize") or results.get("ensemble"):
            return {}
        splits = results["splits"]
        return {name: {m: s[m] for m in ("bleu", "chrf") if m in s} for name, s in splits.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("ignoring %s: it is not an nmt-evaluate results file (%s)", path, err)
        return {}


def _plain(value: Any) -> Any:
    """Config values as JSON: choices as their names."""
    return value if isinstance(value, bool | int | float | type(None)) else str(value)
