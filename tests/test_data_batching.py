"""TokenBatchSampler (coverage, budget, determinism, resume, shards) and collate."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.data.batching import TokenBatchSampler, batch_costs, collate


@pytest.fixture(scope="module")
def lengths():
    """(N, 2) source/target lengths shaped like a caption corpus."""
    rng = np.random.default_rng(0)
    src = rng.integers(3, 40, size=3000)
    tgt = np.clip(src + rng.integers(-4, 6, size=3000), 1, None)
    return np.stack([src, tgt], axis=1)


def _cost(lengths, batch):
    return len(batch) * max(max(lengths[i, 0], lengths[i, 1] + 1) for i in batch)


def test_every_sentence_once_per_epoch_within_the_budget(lengths):
    sampler = TokenBatchSampler(lengths, max_tokens=600, seed=1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(_cost(lengths, b) <= 600 for b in batches)
    # Length grouping keeps padding low: most of each batch is real tokens.
    real = sum(max(s, t + 1) for s, t in lengths)
    padded = sum(_cost(lengths, b) for b in batches)
    assert real / padded > 0.95


def test_max_sentences_and_oversized_sentences():
    sampler = TokenBatchSampler([5] * 10 + [50], max_tokens=20, max_sentences=3, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(11))
    assert [10] in batches  # longer than the budget: alone in its batch
    assert all(len(b) <= 3 for b in batches)
    only_count = TokenBatchSampler([5] * 10, max_tokens=0, max_sentences=4, shuffle=False)
    assert [len(b) for b in only_count] == [4, 4, 2]


def test_same_seed_same_order_other_epoch_other_order(lengths):
    a = TokenBatchSampler(lengths, max_tokens=600, seed=3)
    b = TokenBatchSampler(lengths, max_tokens=600, seed=3)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first
    assert list(TokenBatchSampler(lengths, max_tokens=600, seed=4)) != first


def test_restored_state_yields_exactly_the_remaining_batches(lengths):
    sampler = TokenBatchSampler(lengths, max_tokens=600, seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2)
    it = iter(sampler)
    seen = [next(it) for _ in range(7)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "position": 7}
    fresh = TokenBatchSampler(lengths, max_tokens=600, seed=5)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert seen + rest == full
    assert fresh.state_dict() == {"epoch": 2, "position": 0}


@pytest.mark.parametrize("num_shards", [2, 3, 7])
def test_shards_are_disjoint_covering_and_equal(lengths, num_shards):
    shards = [
        list(TokenBatchSampler(lengths, max_tokens=600, seed=9, num_shards=num_shards, shard_id=r))
        for r in range(num_shards)
    ]
    assert len({len(s) for s in shards}) == 1  # every rank steps the same number of times
    flat = [i for s in shards for b in s for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # disjoint and covering
    assert all(_cost(lengths, b) <= 600 for s in shards for b in s)


def _split(seqs_src, seqs_tgt):
    return SimpleNamespace(
        src=[torch.tensor(x, dtype=torch.long) for x in seqs_src],
        tgt=[torch.tensor(y, dtype=torch.long) for y in seqs_tgt],
    )


def test_collate_pads_and_adds_bos_eos():
    split = _split([[5, 6, 7], [8], [9, 10]], [[11, 12], [13, 14, 15], [16]])
    batch = collate(split, [1, 0])
    assert batch.src.tolist() == [[8, PAD_ID, PAD_ID], [5, 6, 7]]
    assert batch.src_lengths.tolist() == [1, 3]
    assert batch.tgt_in.tolist() == [[BOS_ID, 13, 14, 15], [BOS_ID, 11, 12, PAD_ID]]
    assert batch.tgt_out.tolist() == [[13, 14, 15, EOS_ID], [11, 12, EOS_ID, PAD_ID]]
    assert batch.n_tgt_tokens == 7 == int((batch.tgt_out != PAD_ID).sum())
    assert batch.indices.tolist() == [1, 0] and len(batch) == 2
    moved = batch.to("cpu")
    assert moved.src.equal(batch.src) and moved.n_tgt_tokens == 7
    # An empty source sentence (possible in evaluation sets) pads to a row of PAD.
    split.src = [torch.tensor([], dtype=torch.long), *split.src[1:]]  # replacing the list re-packs
    again = collate(split, [0, 2])
    assert again.src.tolist() == [[PAD_ID, PAD_ID], [9, 10]]
    assert again.src_lengths.tolist() == [0, 2]


def test_sampler_and_collate_in_a_dataloader():
    rng = np.random.default_rng(1)
    split = _split(
        [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=200)],
        [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=200)],
    )
    costs = batch_costs(split.src, split.tgt)
    sampler = TokenBatchSampler(costs, max_tokens=100, seed=2)
    loader = DataLoader(
        range(200), batch_sampler=sampler, collate_fn=functools.partial(collate, split)
    )
    seen = []
    for batch in loader:
        assert batch.src.size(0) * max(batch.src.size(1), batch.tgt_in.size(1)) <= 100
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(200))
