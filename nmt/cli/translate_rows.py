"""What ``nmt-translate`` writes for one input line: its output rows (the best text, or the
n-best rows ``LINE ||| TEXT ||| SCORE``) and, with ``--alignments``, each row's word links
(``nmt.search.alignment``), appended as `` ||| i-j ...`` or kept for a separate file."""

from __future__ import annotations

from nmt.search.alignment import translation_alignment
from nmt.search.translator import Translation, Translator

APPEND = "-"  # --alignments -: links appended to each output row


def format_nbest(position: int, translations: list[Translation], n: int) -> list[str]:
    """The ``n`` lines ``LINE ||| TEXT ||| SCORE`` of the input line at 0-based ``position``;
    LINE is its line number counted from 1 (as sacreBLEU and the attention plots count)."""
    line = position + 1
    lines = [f"{line} ||| {t.text} ||| {t.score:.4f}" for t in translations[:n]]
    while len(lines) < n:
        lines.append(f"{line} |||  ||| 0.0000" if not translations else lines[-1])
    return lines


def output_rows(position: int, translations: list[Translation], n_best: int) -> list[str]:
    """The best text (one row), or ``n_best`` rows of :func:`format_nbest` when above 1."""
    if n_best > 1:
        return format_nbest(position, translations, n_best)
    return [translations[0].text if translations else ""]


def row_translations(translations: list[Translation], n_best: int) -> list[Translation | None]:
    """The translation behind each output row (as :func:`format_nbest` pads: the last one
    repeated; None for an empty input line)."""
    rows: list[Translation | None] = list(translations[: max(n_best, 1)]) or [None]
    return rows + [rows[-1]] * (max(n_best, 1) - len(rows))


def alignment_text(translator: Translator, line: str, translation: Translation | None) -> str:
    """Pharaoh links between the words of ``line`` and of ``translation.text`` ('' for none).

    Raises:
        NMTError: the translation carries no attention (ask ``translate_nbest`` for it).
    """
    return "" if translation is None else translation_alignment(translator, line, translation)


def line_rows(
    translator: Translator,
    position: int,
    line: str,
    translations: list[Translation],
    n_best: int,
    alignments: str | None,
) -> tuple[list[str], list[str]]:
    """``(output rows, alignment rows)`` of one input line: with ``alignments == "-"`` the
    links end each output row; with a file name they are the second list (one per row)."""
    rows = output_rows(position, translations, n_best)
    if not alignments:
        return rows, []
    links = [alignment_text(translator, line, t) for t in row_translations(translations, n_best)]
    if alignments == APPEND:
        return [f"{row} ||| {link}" for row, link in zip(rows, links)], []
    return rows, links
