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
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, DecodeConfig
from nmt.search.constraints import constrain
from nmt.search.hypothesis import Hypothesis, coverage_penalty, length_penalty, max_output_lengths

NEG_INF = float("-inf")


@torch.inference_mode()
def beam_search(
    model, src: Tensor, src_lengths: Tensor, cfg: DecodeConfig, return_attention: bool = False
) -> list[list[Hypothesis]]:
    """Beam search for a batch ``src (B, S)``, ``src_lengths (B,)``.

    The beam is ``max(cfg.beam_size, cfg.n_best)`` wide.

    Returns:
        per sentence, its ``cfg.n_best`` best finished hypotheses, best first.
    """
    n_best = max(1, cfg.n_best)
    K = max(cfg.beam_size, n_best)
    B = src.size(0)
    device = src.device
    alpha, normalize = cfg.length_penalty, cfg.length_normalize
    use_coverage = cfg.coverage_penalty != 0.0

    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)

    sent = torch.arange(B, device=device)  # original index of each active sentence
    sent_list = list(range(B))
    max_lens = max_output_lengths(src_lengths, cfg.max_len_a, cfg.max_len_b).clamp(min=cfg.min_len)
    # The beam starts one hypothesis wide (BOS), so the first step runs on B rows, not B*K;
    # W is the current width (rows per sentence), K from the second step on.
    scores = torch.zeros((B, 1), device=device)
    row_max_lens = max_lens
    prev = torch.full((B,), BOS_ID, dtype=torch.long, device=device)
    history = torch.empty((B, 0), dtype=torch.long, device=device)
    attn_hist: Tensor | None = None  # (N*K, t, S) when attention is returned
    coverage: Tensor | None = None  # (N*K, S) summed attention, for the coverage penalty

    finished: list[list[tuple[float, list[int], Tensor | None]]] = [[] for _ in range(B)]
    # n_best-th best finished score of each active sentence (-inf until it has n_best).
    kth_best = torch.full((B,), NEG_INF, device=device)

    max_steps = int(max_lens.max()) + 1
    for t in range(max_steps):
        log_probs, attn, state = model.step(prev, state, enc)
        log_probs = constrain(
            log_probs.float(),
            t,
            history if t > 0 else None,
            row_max_lens,
            cfg.min_len,
            cfg.suppress_unk,
            cfg.no_repeat_ngram_size,
        )
        (N, W), V = scores.shape, log_probs.size(1)
        if attn is not None:
            attn = attn.float()
            if use_coverage:
                coverage = attn if coverage is None else coverage + attn
        cand = log_probs.add_(scores.view(-1, 1)).view(N, W * V)  # in place: no (N*W, V) copy
        top_scores, top_idx = cand.topk(min(2 * K, W * V), dim=1)  # (N, 2K), sorted
        top_beam = top_idx // V
        top_tok = top_idx % V
        is_eos = (top_tok == EOS_ID) & (top_scores > NEG_INF)

        # --- finished hypotheses: EOS candidates ranked among the first K -----------------
        final = is_eos[:, :K]
        if bool(final.any()):
            where_n, where_j = final.nonzero(as_tuple=True)
            src_rows = where_n * W + top_beam[where_n, where_j]
            lp = length_penalty(t + 1, alpha, normalize)
            final_scores = top_scores[where_n, where_j] / lp
            if use_coverage and coverage is not None:
                final_scores = final_scores + coverage_penalty(
                    coverage[src_rows], enc.mask[src_rows], cfg.coverage_penalty
                )
            step_attn = None
            if return_attention and attn is not None:
                now = attn[src_rows].unsqueeze(1)
                step_attn = now if attn_hist is None else torch.cat([attn_hist[src_rows], now], 1)
            for i, (n, s, toks) in enumerate(
                zip(where_n.tolist(), final_scores.tolist(), history[src_rows].tolist())
            ):
                a = step_attn[i].cpu() if step_attn is not None else None
                bucket = finished[sent_list[n]]
                bucket.append((s, toks, a))
                if len(bucket) >= n_best:
                    bucket.sort(key=lambda h: h[0], reverse=True)
                    kth_best[n] = bucket[n_best - 1][0]

        # --- the K best live continuations become the new beams -----------------------------
        live_scores = top_scores.masked_fill(top_tok == EOS_ID, NEG_INF)
        live_scores, pick = live_scores.topk(min(K, live_scores.size(1)), dim=1)  # (N, W')
        new_beam = top_beam.gather(1, pick)
        new_tok = top_tok.gather(1, pick)

        best_alive = live_scores[:, 0] / length_penalty(t + 1, alpha, normalize)
        done = (kth_best >= best_alive) | (best_alive == NEG_INF) | (max_lens <= t)
        # One index does both jobs: follow each new beam to its parent row, and drop the
        # rows of finished sentences.
        parent = (torch.arange(N, device=device).unsqueeze(1) * W + new_beam).view(-1)
        keep = None
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            parent = parent.view(N, -1)[keep].view(-1)
            live_scores, new_tok = live_scores[keep], new_tok[keep]
            sent, max_lens, kth_best = sent[keep], max_lens[keep], kth_best[keep]
            sent_list = sent.tolist()
        W_new = live_scores.size(1)
        if keep is not None or W_new != W:
            # Encoder rows are identical within a sentence: take its first row W_new times.
            first = (keep if keep is not None else torch.arange(N, device=device)) * W
            enc = enc.index_select(first.repeat_interleave(W_new))
            row_max_lens = max_lens.repeat_interleave(W_new)
        state = model.reorder_state(state, parent)
        history = torch.cat([history[parent], new_tok.view(-1, 1)], dim=1)
        if attn is not None and return_attention:
            now = attn[parent].unsqueeze(1)
            attn_hist = now if attn_hist is None else torch.cat([attn_hist[parent], now], 1)
        if coverage is not None:
            coverage = coverage[parent]
        scores = live_scores
        prev = new_tok.view(-1)

    lengths = src_lengths.tolist()
    results = []
    for b in range(B):
        bucket = sorted(finished[b], key=lambda h: h[0], reverse=True)[:n_best]
        results.append(
            [
                Hypothesis(
                    tokens=toks, score=s, attention=a[:, : lengths[b]] if a is not None else None
                )
                for s, toks, a in bucket
            ]
        )
    return results
