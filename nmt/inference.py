"""Trained models, ready to use: a checkpoint (or several, as an ensemble) with its
vocabularies and config on a device, for translation, evaluation, generation and the bench.

Nothing here trains, and nothing in :mod:`nmt.train` is needed to translate; the bytes are
read safely by :func:`nmt.train.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmt.config import DecodeConfig, from_plain
from nmt.data.charvocab import CharVocab
from nmt.data.tokenizer import FORMAT_VERSION as TOKENIZER_VERSION
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError, first_line
from nmt.models.attention import Attention
from nmt.models.builder import build_model
from nmt.models.quantize import quantize_for_cpu
from nmt.search.ensemble import Ensemble
from nmt.search.lexical_table import LEXICAL_KEY, LexicalTable
from nmt.train.checkpoint import BEST, LAST, load_checkpoint


class Vocabulary(Protocol):
    """What search, scoring and the CLIs need of a vocabulary: a sentencepiece
    :class:`~nmt.data.tokenizer.Tokenizer` or a :class:`~nmt.data.charvocab.CharVocab`."""

    def __len__(self) -> int: ...
    def encode(self, text: str) -> Any: ...
    def decode(self, ids: Any) -> str: ...
    def state_dict(self) -> dict[str, Any]: ...


def same_vocabulary(a: Vocabulary, b: Vocabulary) -> bool:
    """True when two vocabularies map ids to the same pieces (same sizes are not enough)."""
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    for key in sa:
        x, y = sa[key], sb[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (
                isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
            ):
                return False
        elif x != y:
            return False
    return True


def resolve_checkpoint(run_dir_or_file: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``best.pt`` (else ``last.pt``)."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise NMTError(f"run folder {path} has no {BEST} or {LAST}: train first or pass a .pt file")
    return path


def load_for_inference(run_dir_or_file: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model and its vocabularies from a checkpoint.

    Returns:
        ``(model, src_vocab, tgt_vocab, cfg)``: the model in eval mode on ``device``; for a
        character LM both vocabularies are the character vocabulary.
    """
    path = resolve_checkpoint(run_dir_or_file)
    payload = load_checkpoint(path, map_location="cpu")
    try:
        cfg = from_plain(payload["config"])
    except (KeyError, ValueError, OmegaConfBaseException) as err:
        plain_key_error = isinstance(err, KeyError) and not isinstance(err, OmegaConfBaseException)
        detail = f"no {err} entry" if plain_key_error else first_line(err)
        raise NMTError(
            f"checkpoint {path} has a config this nmt cannot read ({detail}): it was written by "
            "another version of nmt or is damaged"
        ) from None
    src = _vocabulary_from_state(payload.get("src_tokenizer"), path)
    tgt = _vocabulary_from_state(payload.get("tgt_tokenizer"), path)
    model = build_model(cfg.model, len(src), len(tgt))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise NMTError(
            f"checkpoint {path} does not match the model its config builds ({first_line(err)})"
        ) from None
    model.to(device).eval()
    return model, src, tgt, cfg


def load_translation_model(
    checkpoint: str | Path,
    ensemble: list[str],
    device: torch.device,
    quantize: str | None = None,
):
    """The translation model of ``checkpoint`` (an :class:`~nmt.search.ensemble.Ensemble`
    with the ``ensemble`` members, which must share its vocabularies); with ``quantize``
    (``"int8"``, CPU only) its per-step layers in int8 (:mod:`nmt.models.quantize`).

    Returns:
        ``(model, src_vocab, tgt_vocab, decode, cfg)``: ``decode`` is the first checkpoint's
        decode settings as a :class:`~nmt.config.DecodeConfig`.
    """
    model, src, tgt, cfg = load_for_inference(checkpoint, device)
    if cfg.model.arch != "seq2seq":
        raise NMTError(f"{checkpoint} is a {cfg.model.arch} checkpoint, not a translation model")
    if ensemble:
        models = [model]
        for path in ensemble:
            other, other_src, other_tgt, _ = load_for_inference(path, device)
            if not (same_vocabulary(other_src, src) and same_vocabulary(other_tgt, tgt)):
                raise NMTError(
                    f"ensemble member {path} uses other vocabularies than {checkpoint}: "
                    "only ensemble models trained with the same tokenizers"
                )
            models.append(other)
        model = Ensemble(models).eval()
    if quantize:
        model = quantize_for_cpu(model, quantize)
    return model, src, tgt, decode_settings(cfg), cfg


def load_lexical_table(
    checkpoint: str | Path, cfg: DictConfig, src: Vocabulary, tgt: Vocabulary
) -> LexicalTable:
    """The lexical table of ``checkpoint`` for ``decode.shortlist`` (:mod:`nmt.search.shortlist`).

    A checkpoint written before nmt stored one gets it rebuilt from its run's training
    split (:func:`nmt.data.prepare.prepare` of ``cfg``: the data cache, else the mirror or
    a download; seconds), checked to use the checkpoint's own vocabularies.

    Raises:
        NMTError: a damaged table, or training data that cannot be prepared or was
            tokenized with other vocabularies.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path, map_location="cpu").get(LEXICAL_KEY)
    if state is not None:
        return LexicalTable.from_state_dict(state, len(src), len(tgt), f"checkpoint {path}")
    from nmt.data.prepare import prepare  # only for checkpoints without a table

    data = prepare(cfg)
    if not (same_vocabulary(data.src_tok, src) and same_vocabulary(data.tgt_tok, tgt)):
        raise NMTError(
            f"checkpoint {path} has no lexical table and its run's training data is now "
            "tokenized with other vocabularies: decode without --shortlist"
        )
    train = data.splits["train"]
    return LexicalTable.build(train.src, train.tgt, len(src), len(tgt))


def decode_settings(cfg: DictConfig) -> DecodeConfig:
    """A checkpoint config's ``decode`` section as the plain dataclass search takes."""
    if isinstance(cfg.decode, DecodeConfig):
        return cfg.decode
    return OmegaConf.to_object(cfg.decode)  # type: ignore[return-value]


def has_attention(model: torch.nn.Module) -> bool:
    """True when the model (or a member of an ensemble) has an attention layer to plot."""
    return any(isinstance(m, Attention) for m in model.modules())


def _vocabulary_from_state(state: dict[str, Any] | None, path: Path) -> Vocabulary:
    if state is None:
        raise NMTError(f"checkpoint {path} has no tokenizer: it cannot be used for translation")
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in ("char_vocab", "sentencepiece"):
        raise NMTError(
            f"checkpoint {path} holds a tokenizer of an unknown kind ({kind!r}): only "
            "sentencepiece tokenizers and character vocabularies of nmt-train can be used"
        )
    if kind == "sentencepiece" and state.get("format_version", 0) > TOKENIZER_VERSION:
        raise NMTError(
            f"checkpoint {path} has a tokenizer of format_version {state['format_version']}, "
            f"newer than this nmt ({TOKENIZER_VERSION}): upgrade nmt"
        )
    try:
        if kind == "char_vocab":
            return CharVocab.from_state_dict(state)
        return Tokenizer.from_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise NMTError(
            f"checkpoint {path} holds a damaged {kind} tokenizer ({first_line(err)}): use "
            "another checkpoint"
        ) from None
