"""Word alignments from attention: which source word each output word was translated from.

Pure functions over piece strings and an attention matrix (no model, no torch needed), so
``nmt-translate --alignments`` and nmt-serve share them; :func:`translation_alignment` applies
them to one output of a :class:`~nmt.search.translator.Translator`.

**Words.** A word is a run of characters between spaces (U+0020), as sentencepiece splits
text: its pieces mark a word start with ``▁``; a piece that is only ``▁`` belongs to the word
after it; ``<unk>`` stands for `` ⁇ `` with a space on each side, as ``Tokenizer.decode`` writes
it, so an unknown target piece is a word of its own. The words of the pieces are therefore the
space-separated words of the decoded text. On the source side pass the pieces as they appear in
the text (:func:`surface_pieces`), so an unknown character stays inside its word.

**Rule (argmax of word-level attention mass).** The ``(T, S)`` piece attention is summed into a
``(target words, source words)`` matrix: ``mass[j, i]`` is the attention that the pieces of
target word ``j`` put on the pieces of source word ``i``. Each target word is linked to the
source word with the most mass (ties: the first), so every target word gets exactly one link
and a source word may get several or none. With ``threshold`` instead, target word ``j`` is
linked to every source word holding at least that share of its mass (``mass[j, i] /
sum_i mass[j, i]``); a target word whose attention is spread thin gets no link. Rows past the
target pieces (the EOS step) are dropped.

Links are Pharaoh ``i-j`` pairs: source word ``i``, target word ``j``, both counted from 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nmt.config import WORD_START
from nmt.errors import NMTError

if TYPE_CHECKING:  # annotations only: this module needs no torch at run time
    from nmt.search.translator import Translation, Translator

UNK_PIECE = "<unk>"
UNK_SURFACE = " \u2047 "  # how sentencepiece decodes an unknown piece


def _surface(piece: str) -> str:
    return UNK_SURFACE if piece == UNK_PIECE else piece.replace(WORD_START, " ")


def piece_words(pieces: Sequence[str]) -> list[int]:
    """The word index of each piece (-1 for a piece in no word: a trailing lone ``▁``).

    A piece belongs to the word of its first visible character; a piece without one (``▁``)
    to the next word that starts.
    """
    owners: list[int] = []
    word, inside, waiting = -1, False, []
    for piece in pieces:
        owner = -1
        for char in _surface(piece):
            if char == " ":
                inside = False
            elif not inside:
                word, inside = word + 1, True
                owner = word if owner < 0 else owner
            elif owner < 0:
                owner = word
        if owner < 0:
            waiting.append(len(owners))
        else:
            for k in waiting:
                owners[k] = owner
            waiting.clear()
        owners.append(owner)
    return owners


def words_of(pieces: Sequence[str]) -> list[str]:
    """The space-separated words that ``pieces`` spell (the decoded text's words)."""
    return [w for w in "".join(_surface(p) for p in pieces).split(" ") if w]


def word_attention(
    source_pieces: Sequence[str], target_pieces: Sequence[str], attention: Any
) -> np.ndarray:
    """``(target words, source words)`` attention mass summed over each word's pieces.

    Args:
        attention: ``(T, S)`` (torch Tensor or ndarray) over the S source pieces; T may hold
            more rows than ``target_pieces`` (the EOS step): they are dropped.
    Raises:
        ValueError: the matrix is smaller than the pieces or its width is not ``len(source_pieces)``.
    """
    matrix = _as_array(attention)
    if matrix.ndim != 2 or matrix.shape[0] < len(target_pieces):
        raise ValueError(
            f"attention of shape {tuple(matrix.shape)} has fewer rows than the "
            f"{len(target_pieces)} target pieces"
        )
    if matrix.shape[1] != len(source_pieces):
        raise ValueError(
            f"attention of shape {tuple(matrix.shape)} has {matrix.shape[1]} columns for "
            f"{len(source_pieces)} source pieces"
        )
    matrix = matrix[: len(target_pieces)]
    return _membership(target_pieces).T @ matrix @ _membership(source_pieces)


def _membership(pieces: Sequence[str]) -> np.ndarray:
    """``(pieces, words)`` 0/1 matrix: 1 where the piece belongs to the word."""
    owners = np.array(piece_words(pieces), dtype=np.int64)
    n_words = int(owners.max(initial=-1)) + 1
    member = np.zeros((len(owners), n_words))
    placed = np.nonzero(owners >= 0)[0]
    member[placed, owners[placed]] = 1.0
    return member


def word_alignment(
    source_pieces: Sequence[str],
    target_pieces: Sequence[str],
    attention: Any,
    threshold: float | None = None,
) -> list[tuple[int, int]]:
    """Sorted ``(source word, target word)`` links from ``(T, S)`` piece attention.

    Without ``threshold`` each target word is linked to the source word with the most
    attention mass; with it, to every source word holding at least that share of its mass
    (see the module docstring). Empty when either side has no word.
    """
    mass = word_attention(source_pieces, target_pieces, attention)
    if mass.size == 0:
        return []
    if threshold is None:
        best = mass.argmax(axis=1)
        return sorted((int(i), j) for j, i in enumerate(best))
    share = mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)
    tgt, src = np.nonzero(share >= threshold)
    return sorted((int(i), int(j)) for j, i in zip(tgt, src))


def pharaoh(pairs: Sequence[tuple[int, int]]) -> str:
    """Links as Pharaoh text: ``"0-0 1-2 2-1"`` (empty string for none)."""
    return " ".join(f"{i}-{j}" for i, j in pairs)


def parse_pharaoh(text: str) -> set[tuple[int, int]]:
    """The links of one Pharaoh line ``"0-0 1-2"`` as ``{(0, 0), (1, 2)}``."""
    return {(int(i), int(j)) for i, _, j in (item.partition("-") for item in text.split())}


def surface_pieces(tokenizer: Any, text: str) -> list[str]:
    """The pieces of ``text`` as they appear in it (``▁`` for a space before a word).

    A sentencepiece :class:`~nmt.data.tokenizer.Tokenizer` names an unknown character (or one
    outside a restricted vocabulary) ``<unk>`` in ``pieces``; here it stays the character, so
    it counts inside its word. The segmentation (and so the count) equals ``pieces(text)``.
    Other tokenizers give their ``pieces``.
    """
    processor, normalize = getattr(tokenizer, "sp", None), getattr(tokenizer, "normalize", None)
    if processor is None or normalize is None:
        return list(tokenizer.pieces(text))
    return list(processor.encode(normalize(text), out_type=str))


def translation_alignment(translator: Translator, line: str, translation: Translation) -> str:
    """Pharaoh links between the words of ``line`` and of ``translation.text``.

    Args:
        translator: what translated ``line`` (its tokenizers and ``max_src_len``, which cut
            the source pieces the attention columns stand for).
        translation: one of ``line``'s translations, asked with attention: ``(T, S)``.
    Raises:
        NMTError: the translation carries no attention (the model has none, or
            ``translate_nbest`` was not asked for it).
    """
    if translation.attention is None:
        raise NMTError(
            "word alignments need attention weights, and this translation has none: "
            "translate with return_attention=True, with a model that has attention"
        )
    source = surface_pieces(translator.src_tok, line)[: translator.max_src_len]
    target = [translator.tgt_tok.id_to_piece(t) for t in translation.tokens]
    return pharaoh(word_alignment(source, target, translation.attention))


def _as_array(attention: Any) -> np.ndarray:
    if hasattr(attention, "detach"):  # a torch Tensor, without importing torch here
        attention = attention.detach().float().cpu().numpy()
    return np.asarray(attention, dtype=np.float64)
