"""Text normalization and training-pair filtering, with every drop counted by reason.

Evaluation sets only get :func:`normalize` (NFC + strip): they are never filtered or
reordered, so scores stay comparable with published numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

# Zero-width and invisible format characters (only make duplicate-looking pieces) and C0/C1
# control characters are removed; control characters that act as whitespace become spaces.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_SPACE_CONTROLS = frozenset("\t\n\r\x0b\x0c\x85")
# Only ASCII spaces are collapsed: typographic spaces (U+00A0, U+202F before French
# punctuation) are part of the text and stay.
_SPACES = re.compile(" {2,}")


def _invisible(match: re.Match) -> str:
    return " " if match.group() in _SPACE_CONTROLS else ""


def normalize(text: str) -> str:
    """Unicode NFC and surrounding whitespace removed (safe for evaluation text)."""
    return unicodedata.normalize("NFC", text).strip()


def clean_text(text: str) -> str:
    """NFC, control and zero-width characters removed, space runs collapsed, stripped."""
    text = _INVISIBLE.sub(_invisible, unicodedata.normalize("NFC", text))
    return _SPACES.sub(" ", text).strip()


def clean_pairs(
    src: Sequence[str], tgt: Sequence[str], drops: Counter
) -> tuple[list[str], list[str]]:
    """Clean both sides and drop pairs with an empty side (counted as ``empty``)."""
    out_src, out_tgt = [], []
    for s, t in zip(src, tgt):
        s, t = clean_text(s), clean_text(t)
        if not s or not t:
            drops["empty"] += 1
            continue
        out_src.append(s)
        out_tgt.append(t)
    return out_src, out_tgt


def length_filter(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    max_len: int,
    max_len_ratio: float,
    drops: Counter,
) -> list[int]:
    """Indices of the pairs to keep; ``max_len`` / ``max_len_ratio`` <= 0 disable a check.

    A pair is dropped as ``too_long`` when either side has more than ``max_len`` pieces, else
    as ``ratio`` when the longer side is more than ``max_len_ratio`` times the shorter.
    """
    keep = []
    for i, (a, b) in enumerate(zip(src_lens, tgt_lens)):
        if max_len > 0 and (a > max_len or b > max_len):
            drops["too_long"] += 1
        elif max_len_ratio > 0 and max(a, b) > max_len_ratio * max(min(a, b), 1):
            drops["ratio"] += 1
        else:
            keep.append(i)
    return keep
