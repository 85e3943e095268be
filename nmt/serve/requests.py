"""A ``POST /translate`` body, checked field by field: a :class:`TranslateRequest`, or a
:class:`RequestError` whose message names the field, the limit and what to send instead."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from nmt.serve.settings import ServeSettings, flag

FIELDS = ("sentences", "beam", "n_best", "length_penalty", "alignments", "prefix", "terms")


class RequestError(Exception):
    """An expected client mistake: the HTTP ``status`` and a one-sentence ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TranslateRequest:
    """What one client asked for (None: the model's own decoding setting)."""

    sentences: list[str]
    beam: int | None = None
    n_best: int | None = None
    length_penalty: float | None = None
    alignments: bool = False
    prefixes: list[str | None] | None = None  # forced target beginnings, one per sentence
    terms: tuple[tuple[str, str], ...] | None = None  # (source, target) terminology pairs


def parse_request(body: bytes, limits: ServeSettings) -> TranslateRequest:
    """Check a request body (UTF-8 JSON) against ``limits``.

    Raises:
        RequestError: 400 for a body that is not a JSON object of the known fields, or a
            field of the wrong type or out of its bounds.
    """
    data = _json_object(body)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}: use {', '.join(FIELDS)}")
    sentences = _sentences(data.get("sentences"), limits)
    alignments = data.get("alignments", False)
    if not isinstance(alignments, bool):
        raise RequestError(400, "alignments must be true or false")
    n_best = _bounded_int(data, "n_best", limits.max_beam)
    if alignments and len(sentences) * (n_best or 1) > limits.max_aligned:
        raise RequestError(
            400,
            f"alignments are returned for at most {limits.max_aligned} hypotheses per "
            f"request (sentences x n_best; --{flag('max_aligned')}): split the request",
        )
    return TranslateRequest(
        sentences=sentences,
        beam=_bounded_int(data, "beam", limits.max_beam),
        n_best=n_best,
        length_penalty=_length_penalty(data.get("length_penalty"), limits),
        alignments=alignments,
        prefixes=_prefixes(data.get("prefix"), len(sentences), limits),
        terms=_terms(data.get("terms"), limits),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(
            400, f"the request body is not UTF-8 (bad byte at offset {err.start}): send UTF-8 JSON"
        ) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, or an over-long integer
        where = (
            f" ({err.msg} at line {err.lineno} column {err.colno})" if hasattr(err, "msg") else ""
        )
        raise RequestError(
            400, f'the request body is not JSON{where}: send {{"sentences": ["..."]}}'
        ) from None
    if not isinstance(data, dict):
        raise RequestError(400, 'the request body must be a JSON object: {"sentences": ["..."]}')
    return data


def _sentences(value: Any, limits: ServeSettings) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RequestError(400, 'sentences must be a list of strings: {"sentences": ["..."]}')
    if not value:
        raise RequestError(400, "sentences is empty: send at least one sentence")
    if len(value) > limits.max_sentences:
        raise RequestError(
            400,
            f"{len(value)} sentences in one request; the limit is {limits.max_sentences} "
            f"(--{flag('max_sentences')}): split the request",
        )
    _check_lengths("sentence", value, limits)
    return value


def _check_lengths(what: str, texts: list[str], limits: ServeSettings) -> None:
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise RequestError(
                400,
                f"{what} {i + 1} has {len(text)} characters; the limit is {limits.max_chars} "
                f"(--{flag('max_chars')}): split it",
            )


def _bounded_int(data: dict[str, Any], name: str, top: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise RequestError(400, f"{name} must be an integer from 1 to {top} (got {value!r})")
    return value


def _length_penalty(value: Any, limits: ServeSettings) -> float | None:
    if value is None:
        return None
    top = limits.max_length_penalty
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, int) and abs(value) > top)  # isfinite overflows on huge ints
        or not math.isfinite(value)
        or not 0 <= value <= top
    ):
        raise RequestError(400, f"length_penalty must be a number from 0 to {top} (got {value!r})")
    return float(value)


def _prefixes(value: Any, count: int, limits: ServeSettings) -> list[str | None] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(p is None or isinstance(p, str) for p in value)
    ):
        raise RequestError(
            400, f"prefix must be a list of {count} strings or nulls, one per sentence"
        )
    _check_lengths("prefix", [p for p in value if p is not None], limits)
    return value


def _terms(value: Any, limits: ServeSettings) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    pairs = value if isinstance(value, list) else None
    if pairs is None or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and s.strip() for s in p)
        for p in pairs
    ):
        raise RequestError(
            400,
            'terms must be a list of [source, target] pairs of non-empty strings: [["dog", "chien"]]',
        )
    if len(pairs) > limits.max_terms:
        raise RequestError(
            400,
            f"{len(pairs)} terms in one request; the limit is {limits.max_terms} "
            f"(--{flag('max_terms')})",
        )
    _check_lengths("term", [s for pair in pairs for s in pair], limits)
    return tuple((src, tgt) for src, tgt in pairs)
