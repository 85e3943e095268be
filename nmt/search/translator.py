"""Raw text in, detokenized text out: tokenization, length-sorted batching, search, ordering.

Used by ``nmt-translate`` and by training's validation, so it has no CLI dependencies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf
from torch import Tensor

from nmt.config import UNK_ID, WORD_START, DecodeConfig
from nmt.data.batching import inference_batches, pad
from nmt.errors import NMTError
from nmt.search import check_guidance, search
from nmt.search.hypothesis import Hypothesis
from nmt.search.lexical_table import LexicalTable
from nmt.search.shortlist import Shortlist, shortlist_view
from nmt.search.table_step import search_view
from nmt.search.terminology import TermTable
from nmt.search.threads import search_in_threads
from nmt.search.workers import Job, search_in_workers

# Limits of terminology constraints (see Translator.term_constraints).
MAX_TERM_PIECES = 16
MAX_LINE_TERM_PIECES = 32


@dataclass
class Translation:
    """One output of one input line (``attention (T, S)`` over the source pieces, or None)."""

    text: str
    score: float
    tokens: list[int]
    attention: Tensor | None = None


class Translator:
    """Translate raw sentences with a trained model (or an :class:`~nmt.search.ensemble.Ensemble`).

    A Translator decodes the weights its model has at its first translation: its search
    view of the model (:func:`~nmt.search.table_step.search_view`, a GRU gate table) is made then
    and kept. After changing the weights, make a new Translator. A model handed over in
    training mode (training's validation) gets a new view at every call.

    Args:
        model: on ``device`` (put in eval mode while translating).
        src_tok, tgt_tok: the checkpoint's tokenizers (``encode``/``decode``).
        decode_cfg: search method and options; ``max_tokens`` is the budget of one decoding
            batch in source tokens (padding included) times the beam (or samples), see
            :meth:`batch_budget`; ``max_sentences`` caps its sentences.
        max_src_len: longer inputs are truncated to this many pieces (a warning on stderr
            names the line).
        warn: where warnings go (one line each).
        lexical: the checkpoint's lexical table (:func:`nmt.inference.load_lexical_table`),
            needed when ``decode_cfg.shortlist`` is set (:mod:`nmt.search.shortlist`).
    """

    def __init__(
        self,
        model,
        src_tok,
        tgt_tok,
        decode_cfg: DecodeConfig,
        device: str | torch.device = "cpu",
        max_src_len: int = 250,
        warn: Callable[[str], None] | None = None,
        lexical: LexicalTable | None = None,
    ) -> None:
        self.model = model
        self.src_tok = src_tok
        self.tgt_tok = tgt_tok
        if not isinstance(decode_cfg, DecodeConfig):  # a DictConfig: plain attributes are faster
            decode_cfg = OmegaConf.to_object(decode_cfg)
        self.cfg = decode_cfg
        self.device = torch.device(device)
        self.max_src_len = max_src_len
        self.warn = warn or (lambda msg: print(f"nmt: warning: {msg}", file=sys.stderr))
        self._warned_parallel = False
        self.lexical = lexical
        # Made at the first translation (see _search_views).
        self._base_view: torch.nn.Module | None = None
        self._views: list[torch.nn.Module] = []

    def translate(self, lines: list[str]) -> list[str]:
        """The best translation of every line, in input order (an empty line stays empty)."""
        return [nbest[0].text if nbest else "" for nbest in self.translate_nbest(lines)]

    def translate_nbest(
        self,
        lines: list[str],
        return_attention: bool = False,
        progress: Callable[[int], None] | None = None,
        *,
        prefixes: list[str | None] | None = None,
        terms: TermTable | None = None,
        first_line: int = 1,
    ) -> list[list[Translation]]:
        """Per input line, its ``decode_cfg.n_best`` translations, best first.

        Empty or whitespace-only lines give ``[]`` without running the model.
        ``progress(n)`` is called after each batch with the number of lines it finished.
        ``first_line``: the number warnings give ``lines[0]`` (a caller feeding lines one by
        one passes each line's own).
        ``prefixes``: per line, target text its translation must start with (None or ""
        for none; the translation's text and tokens include it). ``terms``: the target
        term of every source term found in a line must appear in its translation (beam
        search; a term the target vocabulary cannot spell is skipped with a warning).

        Raises:
            NMTError: not one prefix per line, or terms with a search method that cannot
                follow them (:func:`~nmt.search.check_guidance`).
        """
        encoded = self._encode(lines, first_line)
        prefix_ids = self._encode_prefixes(prefixes, len(lines))
        constraint_ids = self.term_constraints(lines, terms)
        check_guidance(self.cfg, constraint_ids is not None)
        results: list[list[Translation]] = [[] for _ in lines]
        todo = [i for i, ids in enumerate(encoded) if ids]
        if progress is not None and len(todo) < len(lines):
            progress(len(lines) - len(todo))
        lengths = [len(encoded[i]) for i in todo]
        was_training = getattr(self.model, "training", False)
        if was_training:
            self.model.eval()
        batches = [
            [todo[j] for j in batch]
            for batch in inference_batches(lengths, self.batch_budget(), self.cfg.max_sentences)
        ]
        try:
            views = self._search_views(was_training, self.batch_threads())
            jobs = [
                Job(
                    [encoded[i] for i in b],
                    [prefix_ids[i] for i in b] if prefix_ids is not None else None,
                    [constraint_ids[i] for i in b] if constraint_ids is not None else None,
                )
                for b in batches
            ]
            for key, nbest in self._search(views, jobs, return_attention):
                for i, hyps in zip(batches[key], nbest):
                    results[i] = [
                        Translation(self.tgt_tok.decode(h.tokens), h.score, h.tokens, h.attention)
                        for h in hyps
                    ]
                if progress is not None:
                    progress(len(batches[key]))
        finally:
            if was_training:
                self.model.train()
        return results

    def _search_views(self, was_training: bool, count: int) -> list[torch.nn.Module]:
        """``count`` views of the model as search runs it, one per decoding thread
        (:func:`~nmt.search.table_step.search_view`: its gate table is ~2 GFLOP for the
        reference model, made once and shared; with ``decode.shortlist`` each view has its
        own shortlist view around it, whose scratch buffers only one search may use).
        Made at the first translation and kept, unless the model came in training mode: it
        is being trained, so each call makes its own."""
        views = [] if was_training else self._views
        if len(views) < count:
            base = self._base_view
            if base is None or was_training:
                base = search_view(self.model)
                if not was_training:
                    self._base_view = base
            while len(views) < count:
                views.append(shortlist_view(base, self.shortlist()) if self.cfg.shortlist else base)
        return views[:count]

    def shortlist(self) -> Shortlist:
        """The shortlist ``decode.shortlist`` asks for (:mod:`nmt.search.shortlist`).

        Raises:
            NMTError: the Translator was given no lexical table.
        """
        if self.lexical is None:
            raise NMTError(
                f"decode.shortlist={self.cfg.shortlist} needs the checkpoint's lexical table, "
                "and this Translator was given none (nmt.inference.load_lexical_table)"
            )
        return Shortlist.of(self.lexical, self.cfg.shortlist, self.cfg.shortlist_frequent)

    def _search(
        self, views: list[torch.nn.Module], jobs: list[Job], return_attention: bool
    ) -> Iterator[tuple[int, list[list[Hypothesis]]]]:
        """``(batch number, n-best lists)`` per batch: here, one batch after the other; in
        ``decode.workers`` CPU processes or ``decode.batch_threads`` threads, in the order
        they finish."""
        workers = self.workers()
        if workers > 1 and len(jobs) > 1:
            yield from search_in_workers(views[0], jobs, self.cfg, workers, return_attention)
            return
        if len(views) > 1 and len(jobs) > 1:
            yield from search_in_threads(views, jobs, self.cfg, return_attention)
            return
        for key, job in enumerate(jobs):
            src, src_lengths = pad(job.src, self.device)
            guided = (job.prefixes, job.constraints)
            yield key, search(views[0], src, src_lengths, self.cfg, return_attention, *guided)

    def workers(self) -> int:
        """Decoding processes: ``decode.workers`` on the CPU; one on a GPU (with a warning)."""
        return self._cpu_only("workers", self.cfg.workers)

    def batch_threads(self) -> int:
        """Decoding threads: ``decode.batch_threads`` on the CPU outside autocast (its state
        is per thread); one on a GPU (with a warning) or under autocast."""
        threads = self._cpu_only("batch_threads", self.cfg.batch_threads)
        return 1 if torch.is_autocast_enabled("cpu") else threads

    def _cpu_only(self, key: str, value: int) -> int:
        """``decode.<key>``'s ``value`` on the CPU; 1 elsewhere, with a warning the first time."""
        value = max(1, value)
        if value > 1 and self.device.type != "cpu":
            if not self._warned_parallel:
                self.warn(
                    f"decode.{key}={value} applies to CPU decoding; one search at a time "
                    f"decodes on {self.device.type}"
                )
                self._warned_parallel = True
            return 1
        return value

    def batch_budget(self) -> int:
        """Source tokens per batch: ``decode.max_tokens`` counts every beam (or sample) as a
        copy of its source, so the decoder sees about the same rows whatever the beam size
        (bigger batches only spill the CPU caches: measured 1.5x slower at beam 5)."""
        cfg = self.cfg
        copies = max(cfg.beam_size, cfg.n_best) if cfg.method == "beam" else 1
        if cfg.method == "sample":
            copies = max(1, cfg.n_best)
        return max(1, cfg.max_tokens // copies)

    def source_pieces(self, line: str) -> list[str]:
        """The source pieces the model sees for ``line`` (for attention plots)."""
        return self.src_tok.pieces(line)[: self.max_src_len]

    def _encode_prefixes(
        self, prefixes: list[str | None] | None, n_lines: int
    ) -> list[list[int]] | None:
        """Target pieces of each prefix, without EOS (``[]`` for none); None when no line
        has one. A prefix encodes as the start of a sentence would (sentencepiece marks its
        first word as word-initial), so the translation continues it naturally."""
        if prefixes is None:
            return None
        if len(prefixes) != n_lines:
            raise NMTError(
                f"got {len(prefixes)} prefixes for {n_lines} input lines: give one per line "
                "(an empty one for none)"
            )
        ids = [self.tgt_tok.encode(p.strip()) if p and p.strip() else [] for p in prefixes]
        return ids if any(ids) else None

    def term_constraints(self, lines: list[str], terms: TermTable | None) -> list | None:
        """Per line, the pieces of each target term it asks for; None when no line asks.

        The constrained search's memory grows with the phrases' pieces (squared per phrase),
        so a term is at most ``MAX_TERM_PIECES`` pieces and a line's terms together at most
        ``MAX_LINE_TERM_PIECES``.

        Raises:
            NMTError: a term or a line's terms over those limits.
        """
        if terms is None or len(terms) == 0:
            return None
        pieces: dict[str, list[int]] = {}  # this call's terms only: a server sees endless terms
        per_line = []
        for number, line in enumerate(lines, start=1):
            wanted = [self._term_pieces(term, pieces) for term in terms.constraints_for(line)]
            wanted = [ids for ids in wanted if ids]
            if sum(len(ids) for ids in wanted) > MAX_LINE_TERM_PIECES:
                raise NMTError(
                    f"line {number} asks for terms of more than {MAX_LINE_TERM_PIECES} "
                    "target pieces in all: use fewer or shorter terms for it"
                )
            per_line.append(wanted)
        return per_line if any(per_line) else None

    def _term_pieces(self, term: str, cache: dict[str, list[int]]) -> list[int]:
        """A target term's pieces (as a word inside a sentence), or [] with a warning when
        the target vocabulary cannot spell it (it would need UNK)."""
        if term not in cache:
            ids = self.tgt_tok.encode(term)
            if len(ids) > 1 and self.tgt_tok.id_to_piece(ids[0]) == WORD_START:
                # "eau" alone is "▁" + "eau", but "l'eau" ends "'" + "eau": without the bare
                # word-start piece the term is met both ways.
                ids = ids[1:]
            if len(ids) > MAX_TERM_PIECES:
                raise NMTError(
                    f"the target term {term[:40]!r} is {len(ids)} pieces long: a term may have "
                    f"at most {MAX_TERM_PIECES}"
                )
            if UNK_ID in ids or not ids:
                self.warn(
                    f"the target term {term!r} has pieces outside the model's target "
                    "vocabulary: it is not enforced"
                )
                ids = []
            cache[term] = ids
        return cache[term]

    def _encode(self, lines: list[str], first_line: int = 1) -> list[list[int]]:
        """Piece ids per line ([] for blank lines), truncated to ``max_src_len`` with a warning
        that numbers the line from ``first_line``."""
        todo = [i for i, line in enumerate(lines) if line.strip()]
        texts = [lines[i].strip() for i in todo]
        if hasattr(self.src_tok, "encode_batch"):
            ids_list = self.src_tok.encode_batch(texts)
        else:
            ids_list = [self.src_tok.encode(t) for t in texts]
        encoded: list[list[int]] = [[] for _ in lines]
        for i, ids in zip(todo, ids_list):
            if len(ids) > self.max_src_len:
                self.warn(
                    f"input line {i + first_line} has {len(ids)} pieces; only the first "
                    f"{self.max_src_len} are translated"
                )
                ids = ids[: self.max_src_len]
            encoded[i] = list(ids)
        return encoded
