"""The lexical table of a shortlist: for each source piece, its likeliest target pieces.

Built from the training pairs at training time (:class:`~nmt.train.seq2seq_task.Seq2SeqTask`)
and stored in every checkpoint under :data:`LEXICAL_KEY`, so a run folder can decode with a
shortlist (:mod:`nmt.search.shortlist`) without its data. The statistic is sentence-level
co-occurrence scored with Dice, ``2 c(s, t) / (c(s) + c(t))`` (``c`` counts sentence pairs
holding a piece, or both): ``P(t | s) = c(s, t) / c(s)`` would rank the target side's
function pieces ("▁.", "▁un", "▁de") first for every source piece, spending the table's
slots on pieces the shortlist's frequent list already holds; Dice divides by the target
piece's own frequency too, so a rare source piece keeps its rare translations.

All of it is vectorised numpy over the ``(sentence, piece)`` pairs: Multi30k's 29,000 pairs
(~4.5 M co-occurrences) take about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nmt.config_checks import SHORTLIST_TABLE_K
from nmt.errors import NMTError

LEXICAL_KEY = "lexical_table"  # its key in a checkpoint payload, beside the tokenizers
TABLE_K = SHORTLIST_TABLE_K  # target pieces kept per source piece: the largest decode.shortlist
FILLER = -1  # a table slot without a target piece (unseen or rare source pieces)
FIRST_REAL_ID = 4  # PAD, UNK, BOS, EOS come first (nmt.config); the shortlist adds its own
STATISTIC = "dice"


def build_lexical_table(
    src_seqs: Sequence[Any],
    tgt_seqs: Sequence[Any],
    src_vocab_size: int,
    tgt_vocab_size: int,
    k: int = TABLE_K,
) -> Tensor:
    """Per source piece its ``k`` best target pieces by Dice over the sentence pairs.

    Args:
        src_seqs, tgt_seqs: the pairs' piece ids (LongTensors or int lists, no BOS/EOS).
    Returns:
        ``(src_vocab_size, k)`` int32, best first; :data:`FILLER` where a source piece has
        fewer than ``k`` co-occurring target pieces. Special target ids never appear.
    """
    table = np.full((src_vocab_size, k), FILLER, dtype=np.int32)
    s_sent, s_piece = _sentence_sets(src_seqs, src_vocab_size)
    t_sent, t_piece = _sentence_sets(tgt_seqs, tgt_vocab_size)
    real = t_piece >= FIRST_REAL_ID
    t_sent, t_piece = t_sent[real], t_piece[real]
    if s_piece.size == 0 or t_piece.size == 0:
        return torch.from_numpy(table)
    n = len(src_seqs)
    # Every (source piece, target piece) of every pair: each source entry of sentence i is
    # repeated once per target entry of sentence i (their block in the sorted t arrays).
    t_per_sent = np.bincount(t_sent, minlength=n)
    t_start = np.cumsum(t_per_sent) - t_per_sent
    reps = t_per_sent[s_sent]
    total = int(reps.sum())
    block_start = np.repeat(np.cumsum(reps) - reps, reps)
    pair_t = t_piece[np.repeat(t_start[s_sent], reps) + (np.arange(total) - block_start)]
    pair_s = np.repeat(s_piece, reps)
    keys, both = np.unique(pair_s * tgt_vocab_size + pair_t, return_counts=True)
    s, t = keys // tgt_vocab_size, keys % tgt_vocab_size
    c_s = np.bincount(s_piece, minlength=src_vocab_size)
    c_t = np.bincount(t_piece, minlength=tgt_vocab_size)
    dice = 2.0 * both / (c_s[s] + c_t[t])
    order = np.lexsort((t, -dice, s))  # by source piece, best score first, ties by id
    s, t = s[order], t[order]
    first = np.searchsorted(s, s, side="left")  # where each source piece's run starts
    rank = np.arange(s.size) - first
    keep = rank < k
    table[s[keep], rank[keep]] = t[keep]
    return torch.from_numpy(table)


def frequency_order(tgt_seqs: Sequence[Any], tgt_vocab_size: int) -> Tensor:
    """Every target id, most frequent (token count over ``tgt_seqs``) first: ``(V,)`` int32."""
    counts = np.bincount(_flat(tgt_seqs), minlength=tgt_vocab_size)[:tgt_vocab_size]
    return torch.from_numpy(np.argsort(-counts, kind="stable").astype(np.int32))


def _flat(seqs: Sequence[Any]) -> np.ndarray:
    if len(seqs) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs])


def _sentence_sets(seqs: Sequence[Any], vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's distinct pieces: ``(sentence index, piece)`` arrays, sorted by sentence."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    sent = np.repeat(np.arange(len(seqs), dtype=np.int64), lengths)
    keys = np.unique(sent * vocab + _flat(seqs))
    return keys // vocab, keys % vocab


@dataclass
class LexicalTable:
    """What a checkpoint stores for shortlists: ``table (src_vocab, TABLE_K)`` int32 (see
    :func:`build_lexical_table`) and ``by_frequency (tgt_vocab,)`` int32, every target id
    most frequent first (the shortlist's frequent pieces are its head)."""

    table: Tensor
    by_frequency: Tensor

    @classmethod
    def build(
        cls, src_seqs: Sequence[Any], tgt_seqs: Sequence[Any], src_vocab: int, tgt_vocab: int
    ) -> LexicalTable:
        """From a training split's pairs (seconds for Multi30k)."""
        return cls(
            build_lexical_table(src_seqs, tgt_seqs, src_vocab, tgt_vocab),
            frequency_order(tgt_seqs, tgt_vocab),
        )

    def state_dict(self) -> dict[str, Any]:
        """Tensors and strings only: safe for ``torch.load(weights_only=True)``."""
        return {"statistic": STATISTIC, "table": self.table, "by_frequency": self.by_frequency}

    @classmethod
    def from_state_dict(
        cls, state: Any, src_vocab: int, tgt_vocab: int, where: str = "the checkpoint"
    ) -> LexicalTable:
        """The stored table, checked against the vocabulary sizes.

        Raises:
            NMTError: a damaged entry, or one made for other vocabularies.
        """
        table = state.get("table") if isinstance(state, dict) else None
        order = state.get("by_frequency") if isinstance(state, dict) else None
        ok = (
            isinstance(table, Tensor)
            and isinstance(order, Tensor)
            and table.dim() == 2
            and table.size(0) == src_vocab
            and tuple(order.shape) == (tgt_vocab,)
            and (table.numel() == 0 or int(table.max()) < tgt_vocab)
        )
        if not ok:
            raise NMTError(
                f"{where} has a damaged lexical table ({LEXICAL_KEY}) or one of other "
                "vocabularies: decode without --shortlist"
            )
        return cls(table, order)
