"""Batched beam search: every beam of every sentence advances in ONE ``model.step`` call.

Layout: the N active sentences times K beams are the ``N*K`` rows of one batch (beam ``k``
of sentence ``n`` is row ``n*K + k``). Each step:

1. ``model.step`` on all rows, then :func:`constrain` (min/max length, UNK, n-gram rules);
2. one ``topk`` over the ``K*V`` continuations of each sentence picks ``2K`` candidates, so
   that K non-EOS candidates remain even if up to K of them end with EOS (as in fairseq);
3. EOS candidates ranked among the first K become finished hypotheses (scored with the
   length and coverage penalties); they leave the beam, so no compute is spent on them;
4. the best K non-EOS candidates are the new beams (``reorder_state`` with one index);
5. a sentence stops when it has ``n_best`` finished hypotheses and the worst of them scores
   at least as well as its best live beam (at the live beam's current length). With
   ``length_penalty=0`` scores only fall as hypotheses grow, so this test is exact: nothing
   alive could still win. With a length penalty it is the usual "best finished beats best
   alive" stopping rule. A sentence also stops at its maximum length ``a * src_len + b``
   (EOS is forced there). Finished sentences leave the batch (``enc.index_select``).

The only Python loops outside the time loop run over newly finished hypotheses.

Target prefixes (:mod:`nmt.search.prefix`) force each row's first tokens in step 1. With
terminology constraints (:mod:`nmt.search.lexical_constraints`) step 2 is dynamic beam
allocation, the rows carry a constraint state that step 4 reorders, and the n-best lists put
the hypotheses meeting every constraint first. When no sentence of the batch has a prefix or
a constraint, none of that code runs: the search is the plain one, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, DecodeConfig
from nmt.search.constraints import NEG_INF, constrain
from nmt.search.hypothesis import Hypothesis, coverage_penalty, length_penalty, max_output_lengths
from nmt.search.lexical_constraints import LexicalConstraints
from nmt.search.prefix import Prefix

Finished = tuple[float, list[int], "Tensor | None"]  # (score, tokens, attention (T, S))


@dataclass
class Beams:
    """The search's state over its ``N`` active sentences of ``W`` rows each (``N*W`` rows).

    ``W`` is 1 at the first step (BOS only), then ``K``. Per active sentence: ``sent``
    (its original index), ``max_lens``, ``kth_best`` (its ``n_best``-th finished score,
    -inf until it has that many); per row: ``scores``, ``prev``, ``history`` (tokens so far),
    ``row_max_lens``, the decoder ``state`` and ``enc``'s rows; ``finished`` per sentence.
    """

    enc: object
    state: object
    sent: Tensor  # (N,)
    max_lens: Tensor  # (N,)
    row_max_lens: Tensor  # (N*W,)
    kth_best: Tensor  # (N,)
    scores: Tensor  # (N, W)
    prev: Tensor  # (N*W,)
    history: Tensor  # (N*W, t)
    finished: list[list[Finished]]
    sent_list: list[int] = field(default_factory=list)
    attn_hist: Tensor | None = None  # (N*W, t, S) when attention is returned
    coverage: Tensor | None = None  # (N*W, S) summed attention, for the coverage penalty
    lexical: LexicalConstraints | None = None  # the rows' constraint state, when constrained


@dataclass
class Candidates:
    """The ``2K`` best continuations of each sentence: ``(N, 2K)`` scores (sorted), the row
    within the sentence each extends, its token, and which end with EOS."""

    scores: Tensor
    beam: Tensor
    token: Tensor
    is_eos: Tensor


@torch.inference_mode()
def beam_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    cfg: DecodeConfig,
    return_attention: bool = False,
    prefixes: list[list[int]] | None = None,
    constraints: list[list[list[int]]] | None = None,
) -> list[list[Hypothesis]]:
    """Beam search for a batch ``src (B, S)``, ``src_lengths (B,)``.

    The beam is ``max(cfg.beam_size, cfg.n_best)`` wide. ``prefixes`` (per sentence, token
    ids forced first: :mod:`nmt.search.prefix`) and ``constraints`` (per sentence, token-id
    phrases the output must contain: :mod:`nmt.search.lexical_constraints`) are optional;
    when no sentence has one, the search runs exactly as without them.

    Returns:
        per sentence, its ``cfg.n_best`` best finished hypotheses, best first.
    """
    n_best = max(1, cfg.n_best)
    K = max(cfg.beam_size, n_best)
    prefix = Prefix.of(prefixes, src.size(0), src.device)
    beams = start_beams(model, src, src_lengths, cfg, prefix)
    beams.lexical = LexicalConstraints.of(constraints, src.size(0), src.device)
    for t in range(int(beams.max_lens.max()) + 1):
        # 1. one step of every row, then the rules (and the prefixes)
        log_probs, attn, beams.state = model.step(beams.prev, beams.state, beams.enc)
        log_probs = log_probs.float()
        forcing = None
        if prefix is not None:
            forcing = prefix.forcing(
                t, beams.sent.repeat_interleave(beams.scores.size(1)), log_probs
            )
        log_probs = constrain(
            log_probs,
            t,
            beams.history if t > 0 else None,
            beams.row_max_lens,
            cfg.min_len,
            cfg.suppress_unk,
            cfg.no_repeat_ngram_size,
        )
        if forcing is not None:
            forcing.apply(log_probs)
        if attn is not None:
            attn = attn.float()
            if cfg.coverage_penalty != 0.0:
                beams.coverage = attn if beams.coverage is None else beams.coverage + attn
        if beams.lexical is None:
            cand = top_candidates(beams.scores, log_probs, K)  # 2.
        else:  # 2. by dynamic beam allocation over the constraint tokens met
            at_max = beams.row_max_lens <= t
            cand = Candidates(*beams.lexical.candidates(beams.scores, log_probs, at_max, K))
        collect_finished(beams, cand, attn, t, K, n_best, cfg, return_attention)  # 3.
        if not advance(model, beams, cand, attn, t, K, cfg, return_attention):  # 4. and 5.
            break
    if beams.lexical is None:
        return n_best_lists(beams.finished, src_lengths, n_best)
    every = max(1, max(len(f) for f in beams.finished))
    return beams.lexical.prefer_satisfied(n_best_lists(beams.finished, src_lengths, every), n_best)


def start_beams(
    model, src: Tensor, src_lengths: Tensor, cfg: DecodeConfig, prefix: Prefix | None = None
) -> Beams:
    """Encode; the beam starts one hypothesis (BOS) wide, so the first step runs on ``B``
    rows, not ``B*K``."""
    B, device = src.size(0), src.device
    enc = model.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, cfg.max_len_a, cfg.max_len_b).clamp(min=cfg.min_len)
    if prefix is not None:
        max_lens = prefix.extend_max_lens(max_lens, cfg.max_len_b)
    return Beams(
        enc=enc,
        state=model.init_state(enc),
        sent=torch.arange(B, device=device),
        sent_list=list(range(B)),
        max_lens=max_lens,
        row_max_lens=max_lens,
        kth_best=torch.full((B,), NEG_INF, device=device),
        scores=torch.zeros((B, 1), device=device),
        prev=torch.full((B,), BOS_ID, dtype=torch.long, device=device),
        history=torch.empty((B, 0), dtype=torch.long, device=device),
        finished=[[] for _ in range(B)],
    )


def top_candidates(scores: Tensor, log_probs: Tensor, K: int) -> Candidates:
    """Step 2: one ``topk`` over the ``W*V`` continuations of each sentence keeps ``2K``, so
    ``K`` non-EOS ones remain even if ``K`` of them end with EOS."""
    (N, W), V = scores.shape, log_probs.size(1)
    cand = log_probs.add_(scores.view(-1, 1)).view(N, W * V)  # in place: no (N*W, V) copy
    top_scores, top_idx = cand.topk(min(2 * K, W * V), dim=1)  # (N, 2K), sorted
    top_tok = top_idx % V
    is_eos = (top_tok == EOS_ID) & (top_scores > NEG_INF)
    return Candidates(top_scores, top_idx // V, top_tok, is_eos)


def collect_finished(
    beams: Beams,
    cand: Candidates,
    attn: Tensor | None,
    t: int,
    K: int,
    n_best: int,
    cfg: DecodeConfig,
    return_attention: bool,
) -> None:
    """Step 3: EOS candidates ranked among the first ``K`` become finished hypotheses,
    scored with the length (and coverage) penalty; ``kth_best`` follows."""
    final = cand.is_eos[:, :K]
    if not bool(final.any()):
        return
    W = beams.scores.size(1)
    where_n, where_j = final.nonzero(as_tuple=True)
    src_rows = where_n * W + cand.beam[where_n, where_j]
    lp = length_penalty(t + 1, cfg.length_penalty, cfg.length_normalize)
    final_scores = cand.scores[where_n, where_j] / lp
    if beams.coverage is not None:
        final_scores = final_scores + coverage_penalty(
            beams.coverage[src_rows], beams.enc.mask[src_rows], cfg.coverage_penalty
        )
    step_attn = None
    if return_attention and attn is not None:
        now = attn[src_rows].unsqueeze(1)
        hist = beams.attn_hist
        step_attn = now if hist is None else torch.cat([hist[src_rows], now], 1)
    for i, (n, s, toks) in enumerate(
        zip(where_n.tolist(), final_scores.tolist(), beams.history[src_rows].tolist())
    ):
        a = step_attn[i].cpu() if step_attn is not None else None
        bucket = beams.finished[beams.sent_list[n]]
        bucket.append((s, toks, a))
        if len(bucket) >= n_best:
            bucket.sort(key=lambda h: h[0], reverse=True)
            beams.kth_best[n] = bucket[n_best - 1][0]


def advance(
    model,
    beams: Beams,
    cand: Candidates,
    attn: Tensor | None,
    t: int,
    K: int,
    cfg: DecodeConfig,
    return_attention: bool,
) -> bool:
    """Steps 4 and 5: the ``K`` best live candidates become the beams; finished sentences
    leave the batch. Returns False when no sentence is left."""
    N, W = beams.scores.shape
    device = beams.scores.device
    live_scores = cand.scores.masked_fill(cand.token == EOS_ID, NEG_INF)
    live_scores, pick = live_scores.topk(min(K, live_scores.size(1)), dim=1)  # (N, W')
    new_beam = cand.beam.gather(1, pick)
    new_tok = cand.token.gather(1, pick)

    best_alive = live_scores[:, 0] / length_penalty(t + 1, cfg.length_penalty, cfg.length_normalize)
    done = (beams.kth_best >= best_alive) | (best_alive == NEG_INF) | (beams.max_lens <= t)
    # One index does both jobs: follow each new beam to its parent row, and drop the rows of
    # finished sentences.
    parent = (torch.arange(N, device=device).unsqueeze(1) * W + new_beam).view(-1)
    keep = None
    if bool(done.any()):
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() == 0:
            return False
        parent = parent.view(N, -1)[keep].view(-1)
        live_scores, new_tok = live_scores[keep], new_tok[keep]
        beams.sent, beams.max_lens = beams.sent[keep], beams.max_lens[keep]
        beams.kth_best = beams.kth_best[keep]
        beams.sent_list = beams.sent.tolist()
    W_new = live_scores.size(1)
    if keep is not None or W_new != W:
        # Encoder rows are identical within a sentence: take its first row W_new times.
        first = (keep if keep is not None else torch.arange(N, device=device)) * W
        beams.enc = beams.enc.index_select(first.repeat_interleave(W_new))
        beams.row_max_lens = beams.max_lens.repeat_interleave(W_new)
    beams.state = model.reorder_state(beams.state, parent)
    if beams.lexical is not None:
        beams.lexical.follow(parent, new_tok.view(-1))
    beams.history = torch.cat([beams.history[parent], new_tok.view(-1, 1)], dim=1)
    if attn is not None and return_attention:
        now = attn[parent].unsqueeze(1)
        hist = beams.attn_hist
        beams.attn_hist = now if hist is None else torch.cat([hist[parent], now], 1)
    if beams.coverage is not None:
        beams.coverage = beams.coverage[parent]
    beams.scores = live_scores
    beams.prev = new_tok.view(-1)
    return True


def n_best_lists(
    finished: list[list[Finished]], src_lengths: Tensor, n_best: int
) -> list[list[Hypothesis]]:
    """Per sentence its ``n_best`` finished hypotheses, best first, attention cut to its
    real source tokens."""
    lengths = src_lengths.tolist()
    results = []
    for b, hyps in enumerate(finished):
        best = sorted(hyps, key=lambda h: h[0], reverse=True)[:n_best]
        results.append(
            [
                Hypothesis(
                    tokens=toks, score=s, attention=a[:, : lengths[b]] if a is not None else None
                )
                for s, toks, a in best
            ]
        )
    return results
