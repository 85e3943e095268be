"""Terminology: which target terms a source line asks for (the constraints of a beam search).

A :class:`TermTable` maps source terms to target terms (``--terms FILE``: one
``source<TAB>target`` pair per line). :meth:`TermTable.constraints_for` finds the source
terms of a line as whole words, case-insensitively; where matches overlap the longest wins
(``"red shirt"`` beats ``"shirt"`` in "a red shirt"). The target terms it returns are what
:mod:`nmt.search.lexical_constraints` makes the search put in the translation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from nmt.errors import DataError, NMTError


class TermTable:
    """Source term -> target term, matched on whole words without regard to case.

    Build it with :meth:`from_file` or :meth:`from_pairs`.
    """

    def __init__(self, pairs: dict[str, tuple[str, str]]) -> None:
        # key: the source term case-folded with single spaces -> (source as given, target)
        self._pairs = pairs
        # Longest first, so each position's alternation yields its longest term; group i+1
        # is term i: which term matched is read from the group, never from the matched text
        # (IGNORECASE and casefold() disagree on letters like Turkish dotless i).
        self._keys = sorted(pairs, key=lambda k: len(pairs[k][0]), reverse=True)
        self._pattern = _pattern([pairs[k][0] for k in self._keys])

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> TermTable:
        """A table of ``(source, target)`` pairs (surrounding spaces are ignored).

        Raises:
            NMTError: a pair with an empty side, or a source term given twice.
        """
        return cls(_table((f"term pair {i}", pair) for i, pair in enumerate(pairs, start=1)))

    @classmethod
    def from_file(cls, path: str | Path) -> TermTable:
        """Read a UTF-8 TSV file: ``source<TAB>target`` per line; blank lines are skipped.

        Raises:
            DataError: the file is missing or not UTF-8; NMTError: a line is not two
                non-empty tab-separated fields, or repeats a source term.
        """
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except OSError as err:
            raise DataError(f"cannot read the terms file {path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise DataError(f"terms file {path} is not UTF-8 text: convert it to UTF-8") from None
        located = [
            (f"terms file {path} line {number}", tuple(line.split("\t")))
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
        return cls(_table(located))

    def __len__(self) -> int:
        return len(self._pairs)

    def pairs(self) -> list[tuple[str, str]]:
        """The ``(source, target)`` pairs as given (spaces squeezed)."""
        return list(self._pairs.values())

    def constraints_for(self, line: str) -> list[str]:
        """The target terms whose source term occurs in ``line``, in the order they occur
        (each once). Whole words only, case-insensitive; on overlaps the longest match wins
        (then the earliest)."""
        if self._pattern is None:
            return []
        # A lookahead matches at every position, so overlapping candidates are all seen;
        # the alternation lists longer terms first, so each position yields its longest.
        spans = [
            (m.start(m.lastindex), m.end(m.lastindex), self._keys[m.lastindex - 1])
            for m in self._pattern.finditer(line)
            if m.lastindex is not None
        ]
        chosen: list[tuple[int, int, str]] = []
        for start, end, key in sorted(spans, key=lambda s: (s[0] - s[1], s[0])):
            if all(end <= s or start >= e for s, e, _ in chosen):
                chosen.append((start, end, key))
        targets: list[str] = []
        for _, _, key in sorted(chosen):
            target = self._pairs[key][1]
            if target not in targets:
                targets.append(target)
        return targets


def _table(located: Iterable[tuple[str, tuple]]) -> dict[str, tuple[str, str]]:
    """``(where, (source, target))`` pairs -> the table, refusing a bad or repeated pair
    with one sentence naming ``where``."""
    table: dict[str, tuple[str, str]] = {}
    for where, pair in located:
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise NMTError(
                f"{where} is not a source<TAB>target pair (got {pair!r}): give one "
                f"source term and one target term, as in 'dog<TAB>chien'"
            )
        source, target = " ".join(str(pair[0]).split()), " ".join(str(pair[1]).split())
        if not source or not target:
            raise NMTError(
                f"{where} has an empty source or target term: give both, as in 'dog<TAB>chien'"
            )
        key = source.casefold()
        if key in table:
            raise NMTError(
                f"{where} repeats the source term {source!r}: give each source term once "
                f"(matching ignores case)"
            )
        table[key] = (source, target)
    return table


def _pattern(sources: list[str]) -> re.Pattern | None:
    """One regex finding, at each position, the first (longest: ``sources`` come longest
    first) source term there as whole words; term ``i`` is group ``i + 1``."""
    if not sources:
        return None
    groups = "|".join(
        "(" + r"\s+".join(re.escape(word) for word in t.split()) + ")" for t in sources
    )
    return re.compile(rf"(?=(?<!\w)(?:{groups})(?!\w))", re.IGNORECASE)
