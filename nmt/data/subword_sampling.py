"""Subword regularisation (Kudo 2018): a new unigram segmentation of the training text
every epoch, drawn with ``P(segmentation) ** alpha`` from the tokenizer's unigram model.

Why not sentencepiece's own sampling (``enable_sampling=True``): its random generator,
seeded with ``spm.set_random_generator_seed``, gives the same ids twice in one process but
different ids in another process (measured with sentencepiece 0.2.3), so a resumed run
would not see the segmentation the interrupted run saw. Here the draws come from a numpy
``Generator`` seeded by the caller (``(train.seed, epoch, side)``): the same seed gives the
same ids in any process, and no global generator (torch, numpy, sentencepiece) is touched.

How: sentencepiece splits text at spaces before segmenting (no piece crosses a space), so a
sentence's unigram lattice is its words' lattices one after another, and sampling a
sentence is sampling each of its words independently. Each distinct word gets its lattice
once (:class:`SegmentationSampler`); every epoch all word occurrences are sampled together,
backwards through their lattices (forward-filtering backward-sampling), one vectorized
step per piece. With ``nbest >= 2`` a word's candidates are instead its ``nbest`` best
segmentations (sentencepiece's n-best, per word), drawn in one step.

A restricted tokenizer (``tokenizer.restrict_vocab``) is respected by construction: only
its kept pieces are lattice edges. A word no kept pieces can cover keeps its fixed
segmentation. Only unigram models have piece probabilities to sample from
(``nmt.config_checks`` refuses the other model types).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from nmt.config import WORD_START
from nmt.data.tokenizer import N_SPECIAL, Tokenizer


class SegmentationSampler:
    """Samples segmentations of fixed sentences (cleaned text, as the tokenizer sees it).

    Args:
        tok: a unigram tokenizer (restricted or not); ids come out in its numbering.
        lines: the sentences (``clean_text`` output: single spaces, stripped).
        alpha: the smoothing exponent: 1 = the model's own distribution, towards 0 = uniform
            over segmentations.
        nbest: -1 = every segmentation of a word; ``n >= 2`` = its ``n`` best ones.
    """

    def __init__(self, tok: Tokenizer, lines: Sequence[str], alpha: float, nbest: int) -> None:
        self.tok, self.alpha, self.nbest = tok, float(alpha), int(nbest)
        sp = tok.sp
        allowed = range(N_SPECIAL, sp.get_piece_size()) if tok.kept is None else tok.kept
        # Pieces a segmentation may use (never control/unk/unused ones), by text.
        self._pieces = {
            sp.id_to_piece(i): i
            for i in allowed
            if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))
        }
        self._longest = max((len(p) for p in self._pieces), default=1)
        self._score = [sp.get_score(i) for i in range(sp.get_piece_size())]
        words: dict[str, int] = {}
        occ, self.words_per_line = [], np.empty(len(lines), dtype=np.int64)
        for n, line in enumerate(lines):
            ws = line.split(" ") if line else []
            occ += [words.setdefault(w, len(words)) for w in ws]
            self.words_per_line[n] = len(ws)
        self.occurrences = np.array(occ, dtype=np.int64)  # word type of each occurrence
        self._by_word = np.argsort(self.occurrences, kind="stable")
        self._build(list(words))

    # -- the tables: one node per character boundary of each word, edges between them ----
    def _build(self, words: list[str]) -> None:
        """Edges of every word, grouped by end node, with their backward-sampling
        probabilities as running sums: ``key = end node + cumulative probability``."""
        ends, starts, probs, pieces = [], [], [], []  # per edge; pieces: tuple of sp ids
        self.word_start = np.empty(len(words), dtype=np.int64)  # global id of node 0
        self.word_end = np.empty(len(words), dtype=np.int64)  # global id of the last node
        node = 0
        for t, word in enumerate(words):
            edges = self._edges(word) if word else []
            self.word_start[t] = node
            n_nodes = len(word) + 2 if word else 1  # "▁" + word: len + 1 characters
            self.word_end[t] = node + n_nodes - 1
            for a, b, ids, p in edges:
                starts.append(node + a)
                ends.append(node + b)
                probs.append(p)
                pieces.append(ids)
            node += n_nodes
        ends_a, probs_a = np.array(ends, dtype=np.int64), np.array(probs, dtype=np.float64)
        order = np.argsort(ends_a, kind="stable")
        ends_a, probs_a = ends_a[order], probs_a[order]
        self.edge_start = np.array(starts, dtype=np.int64)[order]
        cum = np.cumsum(probs_a)
        first = np.r_[True, ends_a[1:] != ends_a[:-1]]  # first edge of each end node
        base = np.maximum.accumulate(np.where(first, np.r_[0.0, cum[:-1]], 0.0))
        within = cum - base  # running sum within the end node's group (its total is 1)
        last = np.r_[ends_a[1:] != ends_a[:-1], True]
        within[last] = 1.0  # exactly 1, so every draw u in [0, 1) lands inside its group
        self.keys = ends_a + within
        # The pieces of each edge, in the tokenizer's numbering, flat.
        seqs = [pieces[i] for i in order.tolist()]
        self.edge_len = np.array([len(s) for s in seqs], dtype=np.int64)
        self.edge_off = np.cumsum(self.edge_len) - self.edge_len
        flat = np.array([i for s in seqs for i in s], dtype=np.int64)
        self.edge_ids = flat if self.tok._new is None else self.tok._new[flat]

    def _edges(self, word: str) -> list[tuple[int, int, tuple[int, ...], float]]:
        """``(start, end, sentencepiece ids, probability given the end)`` of one word."""
        if self.nbest > 0:
            return self._nbest_edges(word)
        text = WORD_START + word
        n = len(text)
        out: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]  # by end
        for a in range(n):
            for b in range(a + 1, min(n, a + self._longest) + 1):
                i = self._pieces.get(text[a:b])
                if i is not None:
                    out[b].append((a, i, self.alpha * self._score[i]))
        # Forward pass: log of the summed weights of all paths from node 0 to each node.
        forward = [0.0] + [-math.inf] * n
        for b in range(1, n + 1):
            terms = [forward[a] + w for a, _, w in out[b] if forward[a] > -math.inf]
            if terms:
                top = max(terms)
                forward[b] = top + math.log(sum(math.exp(x - top) for x in terms))
        if forward[n] == -math.inf:  # no kept pieces cover the word: its fixed pieces
            return [(0, n, tuple(self.tok.sp.encode(word)), 1.0)]
        edges = []
        for b in range(1, n + 1):
            for a, i, w in out[b]:
                p = math.exp(forward[a] + w - forward[b]) if forward[a] > -math.inf else 0.0
                if p > 0.0:
                    edges.append((a, b, (i,), p))
        return edges

    def _nbest_edges(self, word: str) -> list[tuple[int, int, tuple[int, ...], float]]:
        """One edge from the word's end straight to its start per n-best segmentation."""
        n = len(word) + 1
        fixed = tuple(self.tok.sp.encode(word))
        cands = [
            tuple(c)
            for c in self.tok.sp.nbest_encode(word, nbest_size=self.nbest)
            if all(self.tok.sp.id_to_piece(i) in self._pieces for i in c)
        ] or [fixed]
        logw = self.alpha * np.array([sum(self._score[i] for i in c) for c in cands])
        p = np.exp(logw - np.logaddexp.reduce(logw))
        return [(0, n, c, float(q)) for c, q in zip(cands, p)]

    # -- sampling ---------------------------------------------------------------------
    def sample(self, seed: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One segmentation of every sentence: ``(flat ids (total,), lengths (N,))`` in the
        tokenizer's numbering, sentence after sentence; the same ``seed`` gives the same ids."""
        rng = np.random.default_rng(seed)
        # Occurrences walk back from their word's last node to its first, in word order:
        # neighbouring queries then search neighbouring keys (measured 3x faster).
        by_word = self._by_word
        at = self.word_end[self.occurrences[by_word]]
        stop = self.word_start[self.occurrences[by_word]]
        live = np.flatnonzero(at != stop)
        who, step, chosen = [], [], []
        k = 0
        while len(live):
            e = np.searchsorted(self.keys, at[live] + rng.random(len(live)), side="right")
            who.append(by_word[live])
            step.append(np.full(len(live), k))
            chosen.append(e)
            at[live] = self.edge_start[e]
            live = live[at[live] != stop[live]]
            k += 1
        n_occ = len(self.occurrences)
        who_a = np.concatenate(who) if who else np.zeros(0, dtype=np.int64)
        step_a = np.concatenate(step) if step else np.zeros(0, dtype=np.int64)
        drawn = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        # Edges were drawn right to left: an occurrence's step k is its (count - 1 - k)-th edge.
        count = np.bincount(who_a, minlength=n_occ)
        first = np.cumsum(count) - count
        edge = np.empty_like(drawn)
        edge[first[who_a] + count[who_a] - 1 - step_a] = drawn
        pieces_per_occ = np.bincount(who_a, weights=self.edge_len[drawn], minlength=n_occ)
        # Each edge's pieces, in order (an n-best edge holds several).
        lens = self.edge_len[edge]
        rows = np.repeat(self.edge_off[edge] - (np.cumsum(lens) - lens), lens)
        flat = self.edge_ids[rows + np.arange(int(lens.sum()))]
        line_of_occ = np.repeat(np.arange(len(self.words_per_line)), self.words_per_line)
        lengths = np.bincount(
            line_of_occ, weights=pieces_per_occ, minlength=len(self.words_per_line)
        )
        return torch.from_numpy(flat), torch.from_numpy(lengths.astype(np.int64))
