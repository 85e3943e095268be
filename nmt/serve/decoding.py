"""One ``translate_nbest`` call for a group of requests that share their decoding settings,
and its results as JSON. Runs in the decoding thread, which alone touches the Translator."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from nmt.config import DecodeConfig
from nmt.errors import NMTError
from nmt.search.alignment import translation_alignment
from nmt.search.terminology import TermTable
from nmt.search.translator import Translation, Translator
from nmt.serve.requests import RequestError, TranslateRequest


@dataclass(frozen=True)
class DecodeSettings:
    """A request's decoding settings resolved against the model's: requests with equal
    settings are decoded in one call (the batcher's key)."""

    method: str
    beam_size: int
    n_best: int
    length_penalty: float
    alignments: bool
    terms: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def of(cls, request: TranslateRequest, base: DecodeConfig) -> DecodeSettings:
        """Beam search keeps at least ``n_best`` hypotheses (the beam widens, as in
        nmt-translate); ``n_best`` > 1 turns greedy search into beam search."""
        method, beam = str(base.method), base.beam_size
        if request.beam is not None:
            method, beam = "beam", request.beam
        n_best = request.n_best if request.n_best is not None else base.n_best
        if method == "greedy" and n_best > 1:
            method = "beam"
        if method == "beam":
            beam = max(beam, n_best)
        penalty = base.length_penalty if request.length_penalty is None else request.length_penalty
        return cls(method, beam, n_best, penalty, request.alignments, request.terms)

    def config(self, base: DecodeConfig) -> DecodeConfig:
        return dataclasses.replace(
            base,
            method=self.method,
            beam_size=self.beam_size,
            n_best=self.n_best,
            length_penalty=self.length_penalty,
        )


def constraint_kwargs(
    prefixes: list[str | None] | None, terms: tuple[tuple[str, str], ...] | None
) -> dict[str, Any]:
    """The ``prefixes=`` / ``terms=`` arguments of ``translate_nbest`` (none when not asked).

    Raises:
        RequestError: 400 when the terms are refused (a source term given twice, ...).
    """
    kwargs: dict[str, Any] = {}
    if prefixes is not None and any(p is not None for p in prefixes):
        kwargs["prefixes"] = prefixes
    if terms:
        try:
            kwargs["terms"] = TermTable.from_pairs(terms)
        except (NMTError, ValueError) as err:
            raise RequestError(400, f"terms: {err}") from None
    return kwargs


class Decoder:
    """Owns the Translator: decodes groups of requests (call it from one thread only).

    The Translator keeps its search view of the model (made at its first translation); its
    ``cfg`` is set to each group's settings before the group is decoded.
    """

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self.base = translator.cfg

    def settings(self, request: TranslateRequest) -> DecodeSettings:
        """The request's batching key (its terms are checked first).

        Raises:
            RequestError: 400 for bad terms, or terms without beam search.
        """
        kwargs = constraint_kwargs(request.prefixes, request.terms)
        if "terms" in kwargs:  # their size bounds the search's memory: refuse before queueing
            try:
                self.translator.term_constraints(request.sentences, kwargs["terms"])
            except NMTError as err:
                raise RequestError(400, f"terms: {err}") from None
        settings = DecodeSettings.of(request, self.base)
        if request.terms and settings.method != "beam":  # only beam search can place terms
            raise RequestError(
                400,
                f"terms need beam search and this model decodes with {settings.method} by "
                'default: add "beam": 5 to the request',
            )
        return settings

    def cost(self, request: TranslateRequest) -> int:
        """Source pieces the request's sentences cost (as truncated by the Translator)."""
        tok, limit = self.translator.src_tok, self.translator.max_src_len
        return sum(min(len(tok.encode(s)), limit) for s in request.sentences if s.strip())

    def __call__(
        self, settings: DecodeSettings, requests: list[TranslateRequest]
    ) -> list[list[list[dict[str, Any]]]]:
        """Per request, per sentence, its n-best list as JSON objects (one decoding call)."""
        lines = [s for r in requests for s in r.sentences]
        prefixes = None
        if any(r.prefixes is not None for r in requests):
            prefixes = [p for r in requests for p in (r.prefixes or [None] * len(r.sentences))]
        kwargs = constraint_kwargs(prefixes, settings.terms)
        self.translator.cfg = settings.config(self.base)
        with torch.inference_mode():
            results = self.translator.translate_nbest(lines, settings.alignments, **kwargs)
        out, start = [], 0
        for r in requests:
            chunk = zip(r.sentences, results[start : start + len(r.sentences)])
            out.append(
                [self._nbest_json(line, nbest, settings.alignments) for line, nbest in chunk]
            )
            start += len(r.sentences)
        return out

    def _nbest_json(
        self, line: str, nbest: list[Translation], alignments: bool
    ) -> list[dict[str, Any]]:
        source = self.translator.source_pieces(line) if alignments and nbest else None
        return [self._hypothesis_json(line, t, source) for t in nbest]

    def _hypothesis_json(
        self, line: str, t: Translation, source: list[str] | None
    ) -> dict[str, Any]:
        """``attention`` (when asked) has a row per target piece plus one for the end of
        sentence, a column per source piece; ``alignment`` links the words of ``line`` and
        of ``text`` as ``nmt-translate --alignments`` does (both None without attention)."""
        tok = self.translator.tgt_tok
        item: dict[str, Any] = {
            "text": t.text,
            "score": round(float(t.score), 4),
            "tokens": [tok.id_to_piece(i) for i in t.tokens],
        }
        if source is not None:
            item["source_pieces"] = source
            item["attention"] = None
            item["alignment"] = None
            if t.attention is not None:
                rows = t.attention.float().cpu().tolist()
                item["attention"] = [[round(x, 4) for x in row] for row in rows]
                item["alignment"] = translation_alignment(self.translator, line, t)
        return item
