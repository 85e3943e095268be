"""Word alignments from attention (nmt.search.alignment) on hand-made matrices and real pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmt.config import UNK_ID
from nmt.search.alignment import (
    parse_pharaoh,
    pharaoh,
    piece_words,
    surface_pieces,
    word_alignment,
    word_attention,
    words_of,
)

# "The black dog" -> "Le chien noir", "dog" and "chien" in two pieces each.
SOURCE = ["▁The", "▁black", "▁d", "og"]
TARGET = ["▁Le", "▁ch", "ien", "▁noir"]
ATTENTION = np.array(
    [
        [0.90, 0.05, 0.03, 0.02],  # Le
        [0.10, 0.40, 0.30, 0.20],  # ch: its top piece is "black", but "dog" holds 0.5
        [0.05, 0.15, 0.20, 0.60],  # ien
        [0.05, 0.80, 0.10, 0.05],  # noir
        [0.97, 0.01, 0.01, 0.01],  # EOS: dropped
    ]
)


def test_pieces_group_into_the_words_of_the_text():
    pieces = ["▁A", "▁n", "aï", "ve", "▁dog", "▁", "«", "▁3", ".", "5", "▁"]
    assert piece_words(pieces) == [0, 1, 1, 1, 2, 3, 3, 4, 4, 4, -1]
    assert words_of(pieces) == ["A", "naïve", "dog", "«", "3.5"]
    # <unk> decodes as " ⁇ ": a word of its own, and the piece after it starts a new word.
    assert piece_words(["▁ch", "<unk>", "en", "▁x"]) == [0, 1, 2, 3]
    assert words_of(["▁ch", "<unk>", "en"]) == ["ch", "⁇", "en"]
    assert piece_words(["ab", "c"]) == [0, 0]  # no ▁ at all: one word
    assert piece_words([]) == []


def test_words_of_target_pieces_are_the_decoded_words(tiny_tokenizer, tiny_lines):
    """The target word indices count the words of the text the translator writes."""
    tok = tiny_tokenizer
    for line in tiny_lines[::40]:
        ids = tok.encode(line)
        for variant in (ids, ids[:2] + [UNK_ID] + ids[2:], [UNK_ID, *ids, UNK_ID]):
            pieces = [tok.id_to_piece(i) for i in variant]
            assert words_of(pieces) == tok.decode(variant).split()


def test_surface_pieces_keep_unknown_characters_inside_their_word(tiny_tokenizer, tiny_lines):
    tok = tiny_tokenizer.restricted(tiny_lines[:5])  # most pieces are unknown to it
    text = "Zwei Männer 中 stehen."
    assert "<unk>" in tok.pieces(text)
    surface = surface_pieces(tok, text)
    assert len(surface) == len(tok.pieces(text)) and "<unk>" not in surface
    assert words_of(surface) == text.split()


def test_each_target_word_links_to_the_source_word_with_most_mass():
    mass = word_attention(SOURCE, TARGET, ATTENTION)
    assert mass.shape == (3, 3)
    np.testing.assert_allclose(mass[1], [0.15, 0.55, 1.30])  # chien: rows ch+ien, cols d+og
    links = word_alignment(SOURCE, TARGET, ATTENTION)
    assert links == [(0, 0), (1, 2), (2, 1)]  # The-Le, black-noir, dog-chien
    assert pharaoh(links) == "0-0 1-2 2-1" and parse_pharaoh("0-0 1-2 2-1") == set(links)
    assert word_alignment(SOURCE, TARGET, torch.tensor(ATTENTION, dtype=torch.float32)) == links


def test_threshold_links_every_word_holding_that_share():
    # chien: shares 0.075, 0.275, 0.65 -> only dog at 0.3; both black and dog at 0.25.
    assert word_alignment(SOURCE, TARGET, ATTENTION, threshold=0.3) == [(0, 0), (1, 2), (2, 1)]
    assert (1, 1) in word_alignment(SOURCE, TARGET, ATTENTION, threshold=0.25)
    flat = np.full((4, 4), 0.25)  # spread evenly over pieces: "dog" (two pieces) holds half
    assert word_alignment(SOURCE, TARGET[:3], flat, threshold=0.5) == [(2, 0), (2, 1)]
    assert word_alignment(SOURCE, TARGET[:3], flat, threshold=0.6) == []


def test_shapes_that_do_not_fit_the_pieces_are_refused():
    with pytest.raises(ValueError, match="columns"):
        word_alignment(SOURCE[:3], TARGET, ATTENTION)
    with pytest.raises(ValueError, match="fewer rows"):
        word_alignment(SOURCE, TARGET, ATTENTION[:2])
    assert word_alignment(SOURCE, [], ATTENTION[:1]) == []
