"""Lexically constrained beam search with dynamic beam allocation
(nmt/search/lexical_constraints.py), on the toy model of test_search_beam.py.

With the vocabulary-6 toy model (UNK and two words can be emitted) every output of at most
4 tokens is scored by hand, so the constrained search is checked against exhaustive search
over the outputs that contain the constraints.
"""

from __future__ import annotations

import pytest
import torch
from test_search_beam import ToyModel, cfg, random_batch
from test_search_prefix import all_outputs, sequence_log_prob

from nmt.config import UNK_ID
from nmt.errors import ConfigError
from nmt.search import beam_search, search
from nmt.search.lexical_constraints import LexicalConstraints, satisfies


def test_wide_beam_finds_the_exhaustive_best_containing_the_constraints():
    """A beam as wide as every output (3^4) keeps everything: the constrained n-best must be
    the exhaustive n-best among outputs containing every phrase (overlaps allowed)."""
    model = ToyModel(vocab=6, seed=11, sharp=2.0).eval()
    c = cfg(beam_size=81, n_best=3, max_len_a=0.0, max_len_b=4)
    cases = [[[4, 4]], [[5], [4, UNK_ID]], [[4, 5, 4]], [[5, 4], [4, 5]], [[UNK_ID], [5, 5]]]
    for seed, phrases in enumerate(cases):
        src, lengths = random_batch(1, 6, seed=seed, max_len=3)
        exhaustive = sorted(
            (
                (sequence_log_prob(model, src, lengths, toks, c, 4), toks)
                for toks in all_outputs(4)
                if satisfies(toks, phrases)
            ),
            reverse=True,
        )
        hyps = beam_search(model, src, lengths, c, constraints=[phrases])[0]
        assert [h.tokens for h in hyps] == [toks for _, toks in exhaustive[:3]], phrases
        for h, (score, _) in zip(hyps, exhaustive):
            assert h.score == pytest.approx(score, abs=1e-5)


def test_small_beams_meet_every_constraint():
    """The best hypothesis meets all its constraints, and so does every one that ended
    before the length limit; an n-best list is filled up with hypotheses that reached the
    limit without meeting them only when too few meet them (ranked after those). The toy
    model rarely ends early, so most hypotheses here end at the limit."""
    model = ToyModel(seed=5).eval()
    src, lengths = random_batch(6, 12, seed=4)
    g = torch.Generator().manual_seed(0)
    constraints = [
        [torch.randint(4, 12, (int(n),), generator=g).tolist() for n in torch.randint(1, 3, (k,))]
        for k in [1, 2, 3, 1, 2, 3]
    ]
    plain = beam_search(model, src, lengths, cfg(beam_size=4))
    assert not all(satisfies(h[0].tokens, p) for h, p in zip(plain, constraints))
    for K, n_best in [(1, 1), (3, 2), (5, 3), (8, 3)]:
        c = cfg(beam_size=K, n_best=n_best, max_len_a=1.0, max_len_b=8)
        out = search(model, src, lengths, c, constraints=constraints)
        for hyps, phrases, n in zip(out, constraints, lengths.tolist()):
            assert len(hyps) == n_best and satisfies(hyps[0].tokens, phrases)
            met = [satisfies(h.tokens, phrases) for h in hyps]
            assert met == sorted(met, reverse=True)
            assert all(ok or len(h.tokens) == n + 8 for ok, h in zip(met, hyps))
            scores = [h.score for ok, h in zip(met, hyps) if ok]
            assert scores == sorted(scores, reverse=True)


def test_batched_equals_alone_and_unconstrained_sentences_are_unchanged():
    model = ToyModel(seed=7).eval()
    src, lengths = random_batch(5, 12, seed=8)
    constraints = [[[4, 5]], [], [[9], [10, 11]], [], [[6]]]
    prefixes = [[], [7], [], [8, 8], [6, 6]]
    c = cfg(beam_size=4, n_best=2, length_penalty=1.0)
    plain = beam_search(model, src, lengths, c, prefixes=prefixes)
    batched = beam_search(model, src, lengths, c, prefixes=prefixes, constraints=constraints)
    for i, phrases in enumerate(constraints):
        one = (src[i : i + 1, : lengths[i]], lengths[i : i + 1])
        alone = beam_search(model, *one, c, prefixes=[prefixes[i]], constraints=[phrases])[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]
        assert all(h.tokens[: len(prefixes[i])] == prefixes[i] for h in batched[i])
        assert satisfies(batched[i][0].tokens, phrases)
        if not phrases:  # decoded as without any constraint in the batch
            assert [h.tokens for h in plain[i]] == [h.tokens for h in batched[i]]
            assert [h.score for h in plain[i]] == pytest.approx([h.score for h in batched[i]])


def test_empty_constraints_are_the_unchanged_search():
    model = ToyModel(seed=6).eval()
    src, lengths = random_batch(3, 12, seed=2)
    c = cfg(beam_size=4, n_best=2)
    plain = beam_search(model, src, lengths, c)
    for empty in ([[], [], []], [[[]], [], [[], []]]):
        out = search(model, src, lengths, c, constraints=empty)
        assert [[(h.tokens, h.score) for h in n] for n in plain] == [
            [(h.tokens, h.score) for h in n] for n in out
        ]


def test_an_unreachable_constraint_still_gives_a_translation():
    """A phrase longer than the length limit cannot be met: the sentence ends at the limit
    with the best hypothesis it has, after any that meet their constraints."""
    model = ToyModel(seed=3).eval()
    src, lengths = random_batch(2, 12, seed=5, max_len=3)
    c = cfg(beam_size=3, n_best=2, max_len_a=0.0, max_len_b=3)
    out = beam_search(model, src, lengths, c, constraints=[[[4, 5, 6, 7]], [[8]]])
    assert len(out[0]) == 2 and all(len(h.tokens) == 3 for h in out[0])
    assert out[0][0].score > float("-inf")
    assert all(satisfies(h.tokens, [[8]]) for h in out[1])


def test_constraint_state_follows_the_output():
    """Met phrases stay met; a token that breaks a partly written phrase abandons it (the
    progress falls back to what the output still ends with)."""
    state = LexicalConstraints.of([[[4, 5, 4, 6], [5, 6]]], 1, torch.device("cpu"))
    progress = []
    for tok in [4, 5, 4, 5, 4, 6, 7]:
        met, tail, partial = state.extend(torch.tensor([0]), torch.tensor([tok]))
        state.met, state.tail, state.partial = met, tail, partial
        progress.append((met[0].tolist(), partial[0].tolist()))
    assert progress == [
        ([False, False], [1, 0]),  # 4: starts 4 5 4 6
        ([False, False], [2, 1]),  # 5: 4 5 .. and 5 ..
        ([False, False], [3, 0]),  # 4: 4 5 4 ..
        ([False, False], [2, 1]),  # 5 breaks 4 5 4 6; 4 5 .. remains
        ([False, False], [3, 0]),
        ([True, False], [0, 0]),  # 6: 4 5 4 6 met
        ([True, False], [0, 0]),  # 5 6 was never written
    ]
    tokens_met = state.tokens_met(state.met, state.partial, torch.tensor([0]))
    assert tokens_met.tolist() == [4]


def test_methods_that_cannot_follow_constraints_refuse():
    model = ToyModel(seed=6).eval()
    src, lengths = random_batch(2, 12, seed=2)
    for method in ("greedy", "sample"):
        with pytest.raises(ConfigError, match="beam"):
            search(model, src, lengths, cfg(method=method), constraints=[[[4]], []])
    # A beam of one is still a constrained search (greedy would ignore the constraint).
    out = search(model, src, lengths, cfg(beam_size=1), constraints=[[[4, 4]], [[5]]])
    assert satisfies(out[0][0].tokens, [[4, 4]]) and satisfies(out[1][0].tokens, [[5]])
