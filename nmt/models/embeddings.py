"""Embedding layers, and their initialisation from pretrained or gensim-trained vectors.

:class:`Embeddings` is a lookup table (PAD row fixed at zero), an optional learned projection
(``project: true`` with vectors narrower/wider than ``model.emb_dim``), and dropout. Without
the projection such vectors are fitted to the table's width (:func:`fit_width`).

:func:`apply_pretrained` fills the tables of a built model from vectors (a registry vector set
such as GloVe, see :mod:`nmt.data.vector_sets`; a file; or vectors trained with gensim on the
tokenized training text, see :mod:`nmt.models.vectors`) and returns a coverage report.
Mapping onto a sentencepiece vocabulary: the piece ``▁word`` takes
the vector of ``word`` (a piece that is itself a key, e.g. from vectors trained on pieces,
takes its own vector first; a piece equal to a whole word likewise); the lowercase form is
tried last. With ``subword: mean`` a piece that is no whole word takes the frequency-weighted
mean of the vectors of the words it occurs in. Pieces still without a vector are redrawn at
random with the covered vectors' spread.
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
from nmt.config_checks import check_embeddings, effective_init
from nmt.data import vector_sets  # the registry is looked up when used (tests swap it)
from nmt.errors import ConfigError
from nmt.models.vectors import (
    candidate_words,
    load_vectors,
    subword_means,
    train_vectors,
    vector_for,
)

log = logging.getLogger(__name__)

SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)


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
    mirror: str | None = None,
    langs: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Initialise (and freeze) the model's embedding tables as ``emb_cfg`` asks.

    Call it right after ``build_model`` and before creating the optimizer (a projection adds
    parameters). ``train_text`` holds raw training lines per side (``"src"``, ``"tgt"``);
    optional ``"src_mono"`` / ``"tgt_mono"`` lines are added to the side's text (gensim
    training, the words a registry vector set is cut to, sub-word means). ``mirror`` replaces
    the download of registry vector sets; ``langs`` (side -> language) warns of a vector set
    in another language.

    Returns:
        per side: ``init``, and for pretrained sides ``vectors`` (the source), ``dim``,
        ``types`` / ``tokens`` (share of the non-special vocabulary / of training tokens whose
        piece has its own vector), ``types_any`` / ``tokens_any`` (sub-word means included),
        ``projected``, ``frozen``.
    """
    layers: dict[str, Embeddings] = model.embedding_layers()
    sides = {"src": (emb_cfg.src, src_tok), "tgt": (emb_cfg.tgt, tgt_tok)}
    shared = "src" in layers and "tgt" in layers and layers["src"] is layers["tgt"]
    check_embeddings(emb_cfg, set(layers), shared)
    report: dict[str, dict[str, Any]] = {}
    for side, layer in layers.items():
        cfg, tok = sides[side]
        if shared and side == "tgt":
            report["tgt"] = report["src"]
            continue
        lines = list(train_text.get(side, [])) + list(train_text.get(f"{side}_mono", []))
        if shared:
            lines += list(train_text.get("tgt", [])) + list(train_text.get("tgt_mono", []))
        init = effective_init(cfg)
        info: dict[str, Any] = {"init": init}
        if init != "random":
            tied = side in model.tied_sides()
            info.update(_load_side(side, cfg, tok, layer, lines, tied, cache_dir, mirror, langs))
        if cfg.freeze:
            if side in model.tied_sides():
                raise ConfigError(
                    f"embeddings.{side}.freeze=true would also freeze the output layer, which "
                    "model.tie_embeddings=true ties to it: set one of them to false"
                )
            layer.table.weight.requires_grad_(False)
        info["frozen"] = bool(cfg.freeze)
        report[side] = info
        if init != "random":
            _log_side(side, info)
    return report


def _load_side(
    side: str,
    cfg: Any,
    tok: PieceTokenizer,
    layer: Embeddings,
    lines: list[str],
    tied: bool,
    cache_dir: str,
    mirror: str | None,
    langs: dict[str, str] | None,
) -> dict[str, Any]:
    """Fetch, load or train one side's vectors, map them onto its pieces and set its table;
    return the side's report entries (everything but ``init`` and ``frozen``)."""
    init = effective_init(cfg)
    info: dict[str, Any] = {}
    if init == "pretrained":
        kv, info["vectors"] = _registry_vectors(cfg, side, tok, lines, cache_dir, mirror)
        _warn_language(cfg.vectors, side, langs)
    elif init == "file":
        if not cfg.path:
            raise ConfigError(
                f"embeddings.{side}.init=file needs embeddings.{side}.path=/path/to/vectors"
            )
        kv = load_vectors(cfg.path, cfg.format, f"embeddings.{side}")
        info["vectors"] = cfg.path
    else:
        sentences = [tok.pieces(line) for line in lines]
        kv = train_vectors(sentences, cfg, layer.emb_dim, cache_dir)
        info["vectors"] = f"{init} on {len(lines):,} lines"
    vectors, covered, covered_any = map_vectors(kv, tok, layer.table.weight.detach(), cfg, lines)
    dim = vectors.shape[1]
    if dim != layer.emb_dim and not cfg.project:
        vectors = fit_width(vectors, layer.emb_dim, covered_any, cfg.seed)
    elif dim != layer.emb_dim and tied:
        raise ConfigError(
            f"embeddings.{side}: {dim}-dimensional vectors cannot be tied to the output layer: "
            f"set model.emb_dim={dim} or model.tie_embeddings=false"
        )
    layer.set_vectors(vectors)
    piece_counts = _piece_id_counts(tok, lines)  # segmented once for both shares
    info.update(
        dim=dim,
        types=_type_coverage(tok, covered),
        tokens=_token_share(piece_counts, covered),
        types_any=_type_coverage(tok, covered_any),
        tokens_any=_token_share(piece_counts, covered_any),
        projected=layer.proj is not None,
    )
    return info


def _log_side(side: str, info: dict[str, Any]) -> None:
    """One summary line per pretrained side: source, width, coverage."""
    means = info["types_any"] > info["types"]
    log.info(
        "embeddings.%s: %s (%s), %d dims, own vectors for %.1f%% of piece types and "
        "%.1f%% of training tokens%s%s%s",
        side,
        info["init"],
        info["vectors"],
        info["dim"],
        100 * info["types"],
        100 * info["tokens"],
        f"; with sub-word means {100 * info['types_any']:.1f}% / {100 * info['tokens_any']:.1f}%"
        if means
        else "",
        ", projected" if info["projected"] else "",
        ", frozen" if info["frozen"] else "",
    )


def wants_vectors(emb_cfg: Any) -> bool:
    """Whether ``emb_cfg`` changes anything of a randomly initialised model."""
    return any(effective_init(s) != "random" or s.freeze for s in (emb_cfg.src, emb_cfg.tgt))


def _registry_vectors(
    cfg: Any, side: str, tok: PieceTokenizer, lines: list[str], cache_dir: str, mirror: Any
) -> tuple[Any, str]:
    """gensim vectors of registry set ``cfg.vectors``, cut to the words this side can use."""
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size) if i not in SPECIAL_IDS]
    words = candidate_words(pieces, lines, cfg.lowercase_fallback)
    key = f"embeddings.{side}.vectors"
    path = vector_sets.vectors_file(cfg.vectors, words, cache_dir, mirror, key=key)
    return load_vectors(str(path), "word2vec_text", key), cfg.vectors


def _warn_language(name: str, side: str, langs: dict[str, str] | None) -> None:
    lang = (langs or {}).get(side)
    if lang and vector_sets.VECTOR_SETS[name].lang != lang:
        log.warning(
            "embeddings.%s.vectors=%s holds %s words but the %s side is %s: few pieces will match",
            side, name, vector_sets.VECTOR_SETS[name].lang, side, lang,
        )  # fmt: skip


def map_vectors(
    kv: Any, tok: PieceTokenizer, current: Tensor, cfg: Any, lines: list[str] | None = None
) -> tuple[Tensor, list[bool], list[bool]]:
    """The ``(vocab, dim)`` matrix for ``tok``'s pieces from gensim KeyedVectors ``kv``.

    A piece takes its own vector (:func:`~nmt.models.vectors.vector_for`); with
    ``cfg.subword=mean`` a piece without one takes the frequency-weighted mean of the vectors
    of the words of ``lines`` it occurs in. With ``cfg.rescale`` the vectors are scaled to the
    standard deviation of ``current`` (the model's initial table), so the network starts at
    its usual input scale whatever the vectors' own (fastText's values reach +-10).

    Returns:
        the matrix and, per id, whether the row is the piece's own vector, and whether it has
        any vector (own or sub-word mean; special ids never do). The remaining rows are drawn
        from a normal with the covered values' standard deviation (the current random rows
        are used unchanged when nothing is covered and dims agree).
    """
    dim = kv.vector_size
    rows: dict[int, np.ndarray] = {}
    for i in range(tok.vocab_size):
        if i in SPECIAL_IDS:
            continue
        vec = vector_for(kv, tok.id_to_piece(i), cfg.lowercase_fallback)
        if vec is not None:
            rows[i] = np.asarray(vec, dtype=np.float32)
    covered = [i in rows for i in range(tok.vocab_size)]
    if cfg.subword == "mean" and lines:
        skip = set(rows) | set(SPECIAL_IDS)
        rows |= subword_means(kv, tok, lines, skip, cfg.lowercase_fallback)
    covered_any = [i in rows for i in range(tok.vocab_size)]
    if rows:
        stacked = torch.from_numpy(np.stack(list(rows.values())))
        std = float(stacked.std()) if stacked.numel() > 1 else 0.1
        if cfg.rescale and std > 0:
            target = float(current.float().std())
            stacked, std = stacked * (target / std), target
        gen = torch.Generator().manual_seed(cfg.seed)
        out = torch.randn(tok.vocab_size, dim, generator=gen) * std
        out[list(rows.keys())] = stacked
    elif dim == current.shape[1]:
        out = current.float().cpu().clone()
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        out = torch.randn(tok.vocab_size, dim, generator=gen) * 0.1
    out[PAD_ID] = 0.0
    return out.to(device=current.device, dtype=current.dtype), covered, covered_any


def fit_width(vectors: Tensor, width: int, covered: list[bool], seed: int) -> Tensor:
    """``vectors (vocab, dim)`` made ``(vocab, width)`` without a projection layer.

    Narrower vectors get ``width - dim`` extra random columns at the same spread (the table
    keeps the model's full width; the pretrained columns are where words start apart);
    wider ones keep their ``width`` principal components (PCA over the covered rows).
    """
    vocab, dim = vectors.shape
    std = float(vectors[1:].std())
    if dim < width:
        gen = torch.Generator().manual_seed(seed + 1)
        extra = torch.randn(vocab, width - dim, generator=gen, dtype=vectors.dtype) * std
        out = torch.cat([vectors, extra.to(vectors.device)], dim=1)
    else:
        rows = vectors[torch.tensor(covered, device=vectors.device)].double()
        sample = rows if len(rows) > 1 else vectors.double()  # what the components come from
        mean = sample.mean(dim=0, keepdim=True)
        basis = torch.linalg.svd(sample - mean, full_matrices=False)[2][:width]
        out = ((vectors.double() - mean) @ basis.T).to(vectors.dtype)
        out = out * (std / max(float(out[1:].std()), 1e-12))
    out[PAD_ID] = 0.0
    return out


def _type_coverage(tok: PieceTokenizer, covered: list[bool]) -> float:
    """Share of the non-special vocabulary whose row came from vectors."""
    n_types = tok.vocab_size - len(SPECIAL_IDS)
    hits = sum(covered[i] for i in range(tok.vocab_size) if i not in SPECIAL_IDS)
    return hits / max(n_types, 1)


def _piece_id_counts(tok: PieceTokenizer, lines: list[str]) -> Counter[int]:
    """How often each piece id occurs in ``lines`` (pieces outside the vocabulary as UNK)."""
    piece_ids = {tok.id_to_piece(i): i for i in range(tok.vocab_size)}
    pieces: Counter[str] = Counter()
    for line in lines:
        pieces.update(tok.pieces(line))
    ids: Counter[int] = Counter()
    for piece, n in pieces.items():
        ids[piece_ids.get(piece, UNK_ID)] += n
    return ids


def _token_share(id_counts: Counter[int], covered: list[bool]) -> float:
    """Share of the training tokens whose id has a pretrained vector."""
    total = sum(id_counts.values())
    return sum(n for i, n in id_counts.items() if covered[i]) / total if total else 0.0
