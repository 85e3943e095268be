"""Embedding layers, and their initialisation from pretrained or gensim-trained vectors.

:class:`Embeddings` is a lookup table (PAD row fixed at zero), an optional learned projection
(when pretrained vectors are narrower/wider than ``model.emb_dim``), and dropout.

:func:`apply_pretrained` fills the tables of a built model from vectors (a file, or vectors
trained with gensim on the tokenized training text, see :mod:`nmt.models.vectors`) and
returns a coverage report. Mapping onto a sentencepiece vocabulary: the piece ``▁word`` takes
the vector of ``word`` (a piece that is itself a key, e.g. from vectors trained on pieces,
takes its own vector first; a piece equal to a whole word likewise); the lowercase form is
tried last. Pieces without a vector are redrawn at random with the covered vectors' spread.
fastText binary vectors (and ``init: fasttext``) build a vector for any string from its
character n-grams, so every piece gets one.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.errors import ConfigError

log = logging.getLogger(__name__)

SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
INITS = ("random", "file", "word2vec", "fasttext")


class Embeddings(nn.Module):
    """``ids (...)`` -> ``(..., emb_dim)``: table lookup, optional projection, dropout."""

    def __init__(self, vocab_size: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.emb_dim = emb_dim
        self.table = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        self.proj: nn.Linear | None = None
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor) -> Tensor:
        x = self.table(ids)
        if self.proj is not None:
            x = self.proj(x)
        return self.dropout(x)

    def set_vectors(self, vectors: Tensor) -> None:
        """Replace the table by ``vectors (vocab, dim)``; a projection to ``emb_dim`` is added
        when ``dim`` differs (its rows are then exactly ``vectors``, the projection learned)."""
        if vectors.shape[0] != self.vocab_size:
            raise ValueError(f"expected {self.vocab_size} vectors, got {vectors.shape[0]}")
        if vectors.shape[1] != self.table.embedding_dim:
            self._make_projection(vectors.shape[1])
        with torch.no_grad():
            # In place, so that a tied output layer keeps sharing this very tensor.
            self.table.weight.copy_(vectors)
            self.table.weight[PAD_ID].zero_()

    def _make_projection(self, dim: int) -> None:
        weight = self.table.weight
        self.table.weight = nn.Parameter(
            torch.zeros(self.vocab_size, dim, device=weight.device, dtype=weight.dtype)
        )
        self.table.embedding_dim = dim
        self.proj = nn.Linear(dim, self.emb_dim).to(device=weight.device, dtype=weight.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # A checkpoint trained with projected pretrained vectors: build the same shapes before
        # loading, so `build_model(cfg.model, ...)` + `load_state_dict` work without the
        # embeddings config.
        proj = state_dict.get(prefix + "proj.weight")
        if proj is not None and self.proj is None:
            self._make_projection(proj.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PieceTokenizer(Protocol):
    """What :func:`apply_pretrained` needs from a tokenizer."""

    vocab_size: int

    def id_to_piece(self, i: int) -> str: ...

    def pieces(self, text: str) -> list[str]: ...


def apply_pretrained(
    model: nn.Module,
    emb_cfg: Any,
    src_tok: PieceTokenizer,
    tgt_tok: PieceTokenizer,
    train_text: dict[str, list[str]],
    cache_dir: str,
) -> dict[str, dict[str, Any]]:
    """Initialise (and freeze) the model's embedding tables as ``emb_cfg`` asks.

    Call it right after ``build_model`` and before creating the optimizer (a projection adds
    parameters). ``train_text`` holds raw training lines per side (``"src"``, ``"tgt"``);
    optional ``"src_mono"`` / ``"tgt_mono"`` lines are added to the gensim training text only.

    Returns:
        per side: ``init``, and for pretrained sides ``dim``, ``types`` (share of the non-special
        vocabulary with a vector), ``tokens`` (share of training tokens with a vector),
        ``projected``, ``frozen``.
    """
    from nmt.models.vectors import load_vectors, train_vectors

    layers: dict[str, Embeddings] = model.embedding_layers()
    sides = {"src": (emb_cfg.src, src_tok), "tgt": (emb_cfg.tgt, tgt_tok)}
    for side, (cfg, _) in sides.items():
        if cfg.init not in INITS:
            raise ConfigError(
                f"embeddings.{side}.init={cfg.init!r} is unknown: use one of {', '.join(INITS)}"
            )
        if cfg.init != "random" or cfg.freeze:
            if side not in layers:
                raise ConfigError(
                    f"embeddings.{side} asks for '{cfg.init}' but this model has no {side} "
                    "embedding: use embeddings=random"
                )
    shared = "src" in layers and "tgt" in layers and layers["src"] is layers["tgt"]
    if shared and _side_key(emb_cfg.src) != _side_key(emb_cfg.tgt):
        raise ConfigError(
            "model.share_embeddings=true uses one table for both sides, so embeddings.src and "
            "embeddings.tgt must be set the same way"
        )
    report: dict[str, dict[str, Any]] = {}
    for side, layer in layers.items():
        cfg, tok = sides[side]
        if shared and side == "tgt":
            report["tgt"] = report["src"]
            continue
        lines = list(train_text.get(side, []))
        if shared:
            lines += list(train_text.get("tgt", []))
        info: dict[str, Any] = {"init": cfg.init}
        if cfg.init != "random":
            tied = side in model.tied_sides()
            if cfg.init == "file":
                if not cfg.path:
                    raise ConfigError(
                        f"embeddings.{side}.init=file needs embeddings.{side}.path=/path/to/vectors"
                    )
                kv = load_vectors(cfg.path, cfg.format, f"embeddings.{side}")
            else:
                mono = list(train_text.get(f"{side}_mono", []))
                sentences = [tok.pieces(line) for line in lines + mono]
                kv = train_vectors(sentences, cfg, layer.emb_dim, cache_dir)
            vectors, covered = map_vectors(kv, tok, layer.table.weight.detach(), cfg)
            if vectors.shape[1] != layer.emb_dim:
                if not cfg.project:
                    raise ConfigError(
                        f"embeddings.{side}: the vectors have {vectors.shape[1]} dimensions but "
                        f"model.emb_dim={layer.emb_dim}: set model.emb_dim={vectors.shape[1]} "
                        f"or embeddings.{side}.project=true"
                    )
                if tied:
                    raise ConfigError(
                        f"embeddings.{side}: {vectors.shape[1]}-dimensional vectors cannot be "
                        f"tied to the output layer: set model.emb_dim={vectors.shape[1]} or "
                        "model.tie_embeddings=false"
                    )
            layer.set_vectors(vectors)
            n_types = tok.vocab_size - len(SPECIAL_IDS)
            info.update(
                dim=vectors.shape[1],
                types=sum(covered[i] for i in range(tok.vocab_size) if i not in SPECIAL_IDS)
                / max(n_types, 1),
                tokens=_token_coverage(tok, lines, covered),
                projected=layer.proj is not None,
            )
        if cfg.freeze:
            if side in model.tied_sides():
                raise ConfigError(
                    f"embeddings.{side}.freeze=true would also freeze the output layer, which "
                    "model.tie_embeddings=true ties to it: set one of them to false"
                )
            layer.table.weight.requires_grad_(False)
        info["frozen"] = bool(cfg.freeze)
        report[side] = info
        if cfg.init != "random":
            log.info(
                "embeddings.%s: %s, %d dims, covers %.1f%% of types and %.1f%% of training "
                "tokens%s%s",
                side,
                cfg.init,
                info["dim"],
                100 * info["types"],
                100 * info["tokens"],
                ", projected" if info["projected"] else "",
                ", frozen" if cfg.freeze else "",
            )
    return report


def _side_key(cfg: Any) -> tuple:
    return (cfg.init, cfg.path, cfg.format, cfg.freeze)


def map_vectors(
    kv: Any, tok: PieceTokenizer, current: Tensor, cfg: Any
) -> tuple[Tensor, list[bool]]:
    """The ``(vocab, dim)`` matrix for ``tok``'s pieces from gensim KeyedVectors ``kv``.

    Returns:
        the matrix and, per id, whether the row came from ``kv`` (special ids never do).
        Uncovered rows are drawn from a normal with the covered values' standard deviation
        (the current random rows are used unchanged when nothing is covered and dims agree).
    """
    from nmt.models.vectors import vector_for

    dim = kv.vector_size
    rows: dict[int, Tensor] = {}
    for i in range(tok.vocab_size):
        if i in SPECIAL_IDS:
            continue
        vec = vector_for(kv, tok.id_to_piece(i), cfg.lowercase_fallback)
        if vec is not None:
            rows[i] = torch.tensor(np.asarray(vec), dtype=torch.float32)
    covered = [i in rows for i in range(tok.vocab_size)]
    if rows:
        stacked = torch.stack(list(rows.values()))
        std = float(stacked.std()) if stacked.numel() > 1 else 0.1
        gen = torch.Generator().manual_seed(cfg.seed)
        out = torch.randn(tok.vocab_size, dim, generator=gen) * std
        out[list(rows.keys())] = stacked
    elif dim == current.shape[1]:
        out = current.float().cpu().clone()
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        out = torch.randn(tok.vocab_size, dim, generator=gen) * 0.1
    out[PAD_ID] = 0.0
    return out.to(device=current.device, dtype=current.dtype), covered


def _token_coverage(tok: PieceTokenizer, lines: list[str], covered: list[bool]) -> float:
    """Share of the training tokens (pieces of ``lines``) whose id has a pretrained vector."""
    piece_ids = {tok.id_to_piece(i): i for i in range(tok.vocab_size)}
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(tok.pieces(line))
    total = sum(counts.values())
    hit = sum(n for p, n in counts.items() if covered[piece_ids.get(p, UNK_ID)])
    return hit / total if total else 0.0
