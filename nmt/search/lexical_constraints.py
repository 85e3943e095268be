"""Lexically constrained beam search with dynamic beam allocation (Post & Vilar, 2018).

A sentence's constraints are token-id phrases that must appear in its translation (the
target terms of :class:`~nmt.search.terminology.TermTable`). Beam search
(:func:`~nmt.search.beam.beam_search`) calls this module only when some sentence of the
batch has one; then each step:

1. EOS is forbidden to rows that have not met all their constraints (except at the row's
   maximum length, where :func:`~nmt.search.constraints.constrain` forces EOS: a sentence
   always ends, and its output then says what could be met);
2. candidates are (a) the ``2K`` best continuations of the sentence, (b) per row, every
   token that advances one of its unmet phrases, and (c) per row, its best token;
3. each candidate's *bank* is the number of constraint tokens its hypothesis has met (whole
   phrases met, plus the progress inside the longest partly written unmet phrase);
4. the ``K`` beam slots are split evenly over the banks ``0..T`` (``T`` = the sentence's
   constraint tokens; the remainder goes to the banks with most tokens met), each bank fills
   its slots with its best candidates, and slots a bank cannot fill go to the remaining
   candidates with most tokens met, best score first;
5. EOS candidates whose rank in their bank is below ``K`` finish (only rows with every
   constraint met can emit EOS, so this is beam search's own rule inside the top bank).

A hypothesis's state is which phrases it has met and its last ``L - 1`` tokens (``L``: the
longest phrase). A phrase counts as met once the output *contains* it, so the progress
inside a phrase is recomputed from the tail: a token that breaks a partly written phrase
abandons it (what remains is any shorter match the tail still ends with). Everything is
vectorized over rows and candidates; no Python runs per hypothesis.

With no constraint in a sentence (``T = 0``) the candidates hold the ``2K`` best and the
choice is the unconstrained one, so such a sentence decodes as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.errors import NMTError
from nmt.search.constraints import NEG_INF
from nmt.search.hypothesis import Hypothesis

NO_TOKEN = -1  # pads phrases, and tails before the first token: never equal to a real token


@dataclass
class PhraseTable:
    """The constraints of ``B`` sentences, padded to ``C`` phrases of at most ``L`` tokens.

    ``phrases (B, C, L)`` token ids (NO_TOKEN-padded), ``lengths (B, C)`` (0 = padding);
    ``patterns (B, C, L, L)``: row ``k - 1`` holds ``phrase[:k]`` right-aligned, and ``free``
    marks the positions left of it (they match anything); ``as_lists`` per sentence.
    """

    phrases: Tensor
    lengths: Tensor
    patterns: Tensor
    free: Tensor
    as_lists: list[list[list[int]]]

    @staticmethod
    def of(constraints: list[list[list[int]]], device: torch.device) -> PhraseTable:
        """Each sentence's distinct non-empty phrases, padded."""
        as_lists = [_distinct(phrases) for phrases in constraints]
        B = len(as_lists)
        C = max(1, max(len(p) for p in as_lists))
        L = max(1, max((len(ph) for p in as_lists for ph in p), default=1))
        phrases = torch.full((B, C, L), NO_TOKEN, dtype=torch.long)
        lengths = torch.zeros((B, C), dtype=torch.long)
        patterns = torch.full((B, C, L, L), NO_TOKEN, dtype=torch.long)
        for b, sentence in enumerate(as_lists):
            for c, phrase in enumerate(sentence):
                phrases[b, c, : len(phrase)] = torch.tensor(phrase)
                lengths[b, c] = len(phrase)
                for k in range(1, len(phrase) + 1):
                    patterns[b, c, k - 1, L - k :] = torch.tensor(phrase[:k])
        free = torch.arange(L).view(1, 1, 1, L) < (L - torch.arange(1, L + 1)).view(1, 1, L, 1)
        return PhraseTable(
            phrases.to(device),
            lengths.to(device),
            patterns.to(device),
            free.expand(B, C, L, L).to(device),
            as_lists,
        )


@dataclass
class LexicalConstraints:
    """The constraint state of the search's ``R`` rows: ``row_sent (R,)`` each row's
    sentence in the batch, ``met (R, C)`` (padding phrases count as met), ``tail (R, L-1)``
    the last tokens, ``partial (R, C)`` the longest start of each unmet phrase the output
    ends with."""

    table: PhraseTable
    row_sent: Tensor
    met: Tensor
    tail: Tensor
    partial: Tensor

    @staticmethod
    def of(
        constraints: list[list[list[int]]] | None, batch: int, device: torch.device
    ) -> LexicalConstraints | None:
        """The start state (one row per sentence), or None when no sentence has a
        non-empty phrase (the search then runs its unconstrained path)."""
        if constraints is None or not any(any(p) for p in constraints):
            return None
        if len(constraints) != batch:
            raise NMTError(
                f"got constraints for {len(constraints)} sentences in a batch of {batch}: give "
                "one list of phrases per sentence (an empty one for none)"
            )
        if any(t in (PAD_ID, BOS_ID, EOS_ID) for p in constraints for ph in p for t in ph):
            raise NMTError("a constraint holds a PAD, BOS or EOS id: phrases are target words")
        table = PhraseTable.of(constraints, device)
        B, C, L = table.phrases.shape
        return LexicalConstraints(
            table=table,
            row_sent=torch.arange(B, device=device),
            met=table.lengths == 0,
            tail=torch.full((B, L - 1), NO_TOKEN, dtype=torch.long, device=device),
            partial=torch.zeros((B, C), dtype=torch.long, device=device),
        )

    def extend(self, rows: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The state of rows ``rows (M,)`` after emitting ``tokens (M,)``:
        ``(met (M, C), tail (M, L-1), partial (M, C))``."""
        table, sent = self.table, self.row_sent[rows]
        window = torch.cat([self.tail[rows], tokens.unsqueeze(1)], dim=1)  # (M, L)
        lengths = table.lengths[sent]  # (M, C)
        L = window.size(1)
        k = torch.arange(1, L + 1, device=window.device)
        # ends[m, c, k-1]: the output ends with the first k tokens of phrase c
        ends = ((window[:, None, None, :] == table.patterns[sent]) | table.free[sent]).all(3)
        ends &= k <= lengths.unsqueeze(2)
        whole = ends.gather(2, (lengths - 1).clamp(min=0).unsqueeze(2)).squeeze(2)
        met = self.met[rows] | (whole & (lengths > 0))
        partial = torch.where(ends & (k < lengths.unsqueeze(2)), k, 0).amax(2)
        return met, window[:, 1:], partial.masked_fill(met, 0)

    def follow(self, parent: Tensor, tokens: Tensor) -> None:
        """Beam search moved to rows ``parent (R',)`` extended by ``tokens (R',)``."""
        self.met, self.tail, self.partial = self.extend(parent, tokens)
        self.row_sent = self.row_sent[parent]

    def tokens_met(self, met: Tensor, partial: Tensor, sent: Tensor) -> Tensor:
        """``(M,)`` constraint tokens met: whole phrases plus the longest partial one."""
        whole = (self.table.lengths[sent] * met).sum(1)
        return whole + partial.masked_fill(met, 0).amax(1)

    def candidates(
        self, scores: Tensor, log_probs: Tensor, at_max: Tensor, K: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Dynamic beam allocation for ``N`` sentences of ``W`` rows: ``scores (N, W)``,
        ``log_probs (N*W, V)`` (changed in place), ``at_max (N*W,)`` rows at their length
        limit.

        Returns:
            ``(N, 2K)`` scores, row within the sentence, token and is-EOS: columns ``:K``
            are the candidates that finish (EOS), columns ``K:`` the chosen live ones
            (-inf = none), as :func:`~nmt.search.beam.collect_finished` and
            :func:`~nmt.search.beam.advance` read them.
        """
        (N, W), V = scores.shape, log_probs.size(1)
        log_probs[:, EOS_ID].masked_fill_(~self.met.all(1) & ~at_max, NEG_INF)
        flat = log_probs.add_(scores.view(-1, 1)).view(N, W * V)
        index, valid = self._proposals(flat, W, V, K)
        cand_scores = flat.gather(1, index).masked_fill(~valid, NEG_INF)
        valid &= cand_scores > NEG_INF
        beam, token = index // V, index % V
        rows = (torch.arange(N, device=flat.device).unsqueeze(1) * W + beam).view(-1)
        met, _, partial = self.extend(rows, token.view(-1))
        bank = self.tokens_met(met, partial, self.row_sent[rows]).view(N, -1)
        is_eos = valid & (token == EOS_ID)
        live = valid & ~is_eos
        finishes = is_eos & (_rank_in_bank(cand_scores, bank, valid) < K)
        total = self.table.lengths.sum(1)[self.row_sent.view(N, W)[:, 0]]  # (N,) T
        chosen = _allocate(cand_scores, bank, live, total, K)  # (N, K)
        ending = torch.where(finishes, cand_scores, NEG_INF).topk(K, dim=1).indices  # (N, K)
        columns = torch.cat([ending, chosen], dim=1)
        kept = torch.cat([finishes.gather(1, ending), live.gather(1, chosen)], dim=1)
        return (
            cand_scores.gather(1, columns).masked_fill(~kept, NEG_INF),
            beam.gather(1, columns),
            token.gather(1, columns).masked_fill(~kept, PAD_ID),
            torch.cat([kept[:, :K], torch.zeros_like(kept[:, K:])], dim=1),
        )

    def _proposals(self, flat: Tensor, W: int, V: int, K: int) -> tuple[Tensor, Tensor]:
        """``(N, M)`` distinct candidate indices into ``W * V`` and which are real: the
        ``2K`` best, each row's tokens advancing an unmet phrase, each row's best token."""
        N = flat.size(0)
        best = flat.topk(min(2 * K, flat.size(1)), dim=1).indices
        sent = self.row_sent
        nxt = self.table.phrases[sent].gather(2, self.partial.unsqueeze(2)).squeeze(2)  # (R, C)
        nxt = nxt.masked_fill(self.met, NO_TOKEN)
        row_in_sent = torch.arange(W, device=flat.device).repeat(N).unsqueeze(1)
        advancing = (row_in_sent * V + nxt.clamp(min=0)).view(N, -1)
        row_best = (row_in_sent.squeeze(1) * V + flat.view(N * W, V).argmax(1)).view(N, W)
        index = torch.cat([best, advancing, row_best], dim=1)
        valid = torch.ones_like(index, dtype=torch.bool)
        valid[:, best.size(1) : best.size(1) + advancing.size(1)] = (nxt >= 0).view(N, -1)
        M = index.size(1)
        if M < K:  # a tiny vocabulary: pad, so that both halves of the output are K wide
            index = torch.cat([index, index.new_zeros((N, K - M))], dim=1)
            valid = torch.cat([valid, valid.new_zeros((N, K - M))], dim=1)
            M = K
        # Drop repeats: sort the indices (invalid ones get distinct keys past W*V).
        key = torch.where(valid, index, W * V + torch.arange(M, device=flat.device))
        sorted_key, order = key.sort(dim=1)
        repeat = torch.zeros_like(valid)
        repeat.scatter_(1, order[:, 1:], sorted_key[:, 1:] == sorted_key[:, :-1])
        return index, valid & ~repeat

    def prefer_satisfied(
        self, nbest: list[list[Hypothesis]], n_best: int
    ) -> list[list[Hypothesis]]:
        """Per sentence, the hypotheses that meet every constraint first (then by score),
        cut to ``n_best``; the others could only end at the length limit."""
        ranked = []
        for phrases, hyps in zip(self.table.as_lists, nbest):
            order = sorted(hyps, key=lambda h: (not satisfies(h.tokens, phrases), -h.score))
            ranked.append(order[:n_best])
        return ranked


def _rank_in_bank(scores: Tensor, bank: Tensor, among: Tensor) -> Tensor:
    """``(N, M)`` how many candidates of ``among`` in the same bank rank above each one
    (a higher score, or the same score and an earlier position)."""
    M = scores.size(1)
    s_i, s_j = scores.unsqueeze(2), scores.unsqueeze(1)  # [n, i, j]: does j rank above i?
    earlier = torch.ones(M, M, dtype=torch.bool, device=scores.device).tril(-1)  # j < i
    above = (s_j > s_i) | ((s_j == s_i) & earlier)
    same = bank.unsqueeze(2) == bank.unsqueeze(1)
    return (above & same & among.unsqueeze(1)).sum(2)


def _allocate(scores: Tensor, bank: Tensor, live: Tensor, total: Tensor, K: int) -> Tensor:
    """``(N, K)`` positions of the candidates that become the next beams (the module
    docstring's step 4); positions past the live candidates are fillers."""
    n_banks = (total + 1).unsqueeze(1)  # (N, 1)
    slots = K // n_banks + (bank >= n_banks - K % n_banks).long()  # its bank's slots
    in_slots = live & (_rank_in_bank(scores, bank, live) < slots)
    # Candidates in their bank's slots first, then the other live ones by bank (most met
    # first), then the rest; by score within each: a stable sort by score, then by group.
    group = torch.where(in_slots, int(total.max()) + 1, torch.where(live, bank, -1))
    by_score = scores.sort(dim=1, descending=True, stable=True).indices
    order = group.gather(1, by_score).sort(dim=1, descending=True, stable=True).indices
    return by_score.gather(1, order)[:, :K]


def satisfies(tokens: list[int], phrases: list[list[int]]) -> bool:
    """Whether ``tokens`` contain every phrase (as contiguous runs)."""
    return all(_contains(tokens, p) for p in phrases)


def _contains(tokens: list[int], phrase: list[int]) -> bool:
    n = len(phrase)
    return any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


def _distinct(phrases: list[list[int]]) -> list[list[int]]:
    """The non-empty phrases, each once, in order."""
    out: list[list[int]] = []
    for phrase in phrases:
        phrase = [int(t) for t in phrase]
        if phrase and phrase not in out:
            out.append(phrase)
    return out
