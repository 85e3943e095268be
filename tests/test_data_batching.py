"""nmt.data.batching: pair_lengths, TokenBatchSampler (coverage, budget, determinism, resume,
shards), inference_batches, pad and collate, and their outputs pinned on a fixed example."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.data.batching import (
    Packed,
    PackedSplit,
    TokenBatchSampler,
    collate,
    inference_batches,
    pad,
    pair_lengths,
)


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


def test_inference_batches_respect_both_budgets():
    lengths = [3, 9, 4, 9, 1, 5, 2, 8]
    batches = inference_batches(lengths, max_tokens=20, max_sentences=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 and len(b) * max(lengths[i] for i in b) <= 20 for b in batches)
    capped = inference_batches(lengths, max_tokens=1000, max_sentences=3)
    assert [len(b) for b in capped] == [3, 3, 2]
    assert len(inference_batches(lengths, max_tokens=1000)) == 1  # 0 = no sentence cap
    # Longest first, so each batch is shorter than the one before; too long goes alone.
    assert inference_batches([2, 30, 2], max_tokens=10) == [[1], [0, 2]]


def _split(seqs_src, seqs_tgt):
    return SimpleNamespace(
        src=[torch.tensor(x, dtype=torch.long) for x in seqs_src],
        tgt=[torch.tensor(y, dtype=torch.long) for y in seqs_tgt],
    )


def test_collate_pads_and_adds_bos_eos():
    split = _split([[5, 6, 7], [8], [9, 10]], [[11, 12], [13, 14, 15], [16]])
    batch = collate(PackedSplit.of(split), [1, 0])
    assert batch.src.tolist() == [[8, PAD_ID, PAD_ID], [5, 6, 7]]
    assert batch.src_lengths.tolist() == [1, 3]
    assert batch.tgt_in.tolist() == [[BOS_ID, 13, 14, 15], [BOS_ID, 11, 12, PAD_ID]]
    assert batch.tgt_out.tolist() == [[13, 14, 15, EOS_ID], [11, 12, EOS_ID, PAD_ID]]
    assert batch.n_tgt_tokens == 7 == int((batch.tgt_out != PAD_ID).sum())
    assert batch.indices.tolist() == [1, 0] and len(batch) == 2
    moved = batch.to("cpu")
    assert moved.src.equal(batch.src) and moved.n_tgt_tokens == 7
    # An empty source sentence (possible in evaluation sets) pads to a row of PAD.
    split.src = [torch.tensor([], dtype=torch.long), *split.src[1:]]
    again = collate(PackedSplit.of(split), [0, 2])
    assert again.src.tolist() == [[PAD_ID, PAD_ID], [9, 10]]
    assert again.src_lengths.tolist() == [0, 2]


def test_sampler_and_collate_in_a_dataloader():
    rng = np.random.default_rng(1)
    split = _split(
        [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=200)],
        [rng.integers(4, 50, size=n).tolist() for n in rng.integers(1, 20, size=200)],
    )
    sampler = TokenBatchSampler(pair_lengths(split), max_tokens=100, seed=2)
    loader = DataLoader(
        range(200),
        batch_sampler=sampler,
        collate_fn=functools.partial(collate, PackedSplit.of(split)),
    )
    seen = []
    for batch in loader:
        assert batch.src.size(0) * max(batch.src.size(1), batch.tgt_in.size(1)) <= 100
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(200))


# --- pinned outputs: the batches of a small fixed example, as the code made them before the
# batching API was merged into nmt/data/batching.py (issue #17 item 6); any change of
# order, grouping or padding fails here.
PIN_SRC = [[4, 5, 6], [7], [8, 9, 10, 11, 12], [13, 14], [15, 16, 17, 18], [19], [20, 21, 22]]
PIN_SRC += [[23, 24, 25, 26, 27, 28], [29, 30], [31, 32, 33, 34]]
PIN_TGT = [[40, 41], [42, 43, 44], [45], [46, 47, 48, 49], [50, 51], [52, 53, 54, 55, 56], [57]]
PIN_TGT += [[58, 59, 60], [61, 62, 63, 64, 65, 66, 67], [68]]


def _pinned_lengths():
    lengths = pair_lengths(_split(PIN_SRC, PIN_TGT))
    assert lengths.dtype == np.int64
    assert lengths.tolist() == [[len(s), len(t)] for s, t in zip(PIN_SRC, PIN_TGT)]
    return lengths


def test_pinned_training_batches():
    lengths = _pinned_lengths()
    sampler = TokenBatchSampler(lengths, max_tokens=12, seed=7)
    assert sampler.batches() == [[8], [5, 7], [4, 9], [3, 2], [0, 6, 1]]
    sampler.set_epoch(1)
    assert sampler.batches() == [[5, 7], [8], [9, 4], [3, 2], [0, 6, 1]]
    by_count = TokenBatchSampler(lengths, max_tokens=0, max_sentences=3, seed=1)
    assert by_count.batches() == [[4, 9, 3], [8], [2, 5, 7], [0, 6, 1]]
    in_order = TokenBatchSampler(lengths, max_tokens=12, shuffle=False)
    assert in_order.batches() == [[0, 6, 1], [4, 9], [3, 2], [5, 7], [8]]
    pools = TokenBatchSampler(lengths, max_tokens=12, seed=2, pool_size=4)
    assert pools.batches() == [[8], [2, 7], [1], [3, 5], [9, 4], [0, 6]]
    shards = [
        TokenBatchSampler(lengths, max_tokens=12, seed=3, num_shards=3, shard_id=r).batches()
        for r in range(3)
    ]
    assert shards == [[[6], [8]], [[0, 1], [3, 2]], [[9, 4], [5, 7]]]


def test_pinned_training_batches_of_a_large_corpus(lengths):
    import hashlib

    digest = hashlib.sha256()
    for shard in range(2):
        sampler = TokenBatchSampler(lengths, max_tokens=600, seed=11, num_shards=2, shard_id=shard)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            digest.update(repr(sampler.batches()).encode())
    assert digest.hexdigest()[:16] == "394d18d216caf104"


def test_pinned_inference_batches():
    lengths = [len(x) for x in PIN_SRC]
    assert inference_batches(lengths, 12) == [[7, 2], [4, 9, 0], [6, 3, 8, 1], [5]]
    assert inference_batches(lengths, 100, 3) == [[7, 2, 4], [9, 0, 6], [3, 8, 1], [5]]
    # Empty sentences count as one token; ties keep the input order.
    assert inference_batches([0, 3, 0, 2], 4) == [[1], [3, 0], [2]]


def test_pinned_padding():
    src, src_lengths = pad([[5, 6], [7, 8, 9], [10]])
    assert src.tolist() == [[5, 6, PAD_ID], [7, 8, 9], [10, PAD_ID, PAD_ID]]
    assert src_lengths.tolist() == [2, 3, 1]
    assert src.dtype == src_lengths.dtype == torch.long
    batch = collate(PackedSplit.of(_split(PIN_SRC, PIN_TGT)), [7, 1, 4])
    P, B, E = PAD_ID, BOS_ID, EOS_ID
    assert batch.src.tolist() == [
        [23, 24, 25, 26, 27, 28],
        [7, P, P, P, P, P],
        [15, 16, 17, 18, P, P],
    ]
    assert batch.src_lengths.tolist() == [6, 1, 4]
    assert batch.tgt_in.tolist() == [[B, 58, 59, 60], [B, 42, 43, 44], [B, 50, 51, P]]
    assert batch.tgt_out.tolist() == [[58, 59, 60, E], [42, 43, 44, E], [50, 51, E, P]]
    assert batch.n_tgt_tokens == 11 and batch.indices.tolist() == [7, 1, 4]


def test_pad_and_collate_share_one_padding():
    seqs = [[5, 6, 7], [], [8, 9]]
    src, src_lengths = pad(seqs)
    assert src.tolist() == [[5, 6, 7], [PAD_ID] * 3, [8, 9, PAD_ID]]
    assert src_lengths.tolist() == [3, 0, 2]
    batch = collate(PackedSplit.of(_split(seqs, [[4]] * 3)), [0, 1, 2])
    assert batch.src.equal(src) and batch.src_lengths.equal(src_lengths)
    wide = Packed.of(seqs).gather(torch.tensor([2, 0]), width=5)
    assert wide.tolist() == [[8, 9, PAD_ID, PAD_ID, PAD_ID], [5, 6, 7, PAD_ID, PAD_ID]]
    nothing, none = pad([[], []])
    assert nothing.shape == (2, 0) and none.tolist() == [0, 0]


def test_the_packed_split_is_owned_by_its_maker_not_the_split():
    split = _split(PIN_SRC, PIN_TGT)
    before = dict(vars(split))
    packed = PackedSplit.of(split)
    collate(packed, [0, 1])
    assert vars(split).keys() == before.keys()  # nothing cached on the split
    assert all(vars(split)[k] is v for k, v in before.items())
    assert len(packed) == len(PIN_SRC)
    with pytest.raises(TypeError, match="PackedSplit"):
        collate(split, [0, 1])
    with pytest.raises(ValueError, match="3 sources has 2 targets"):
        pair_lengths(_split([[1], [2], [3]], [[1], [2]]))
    with pytest.raises(ValueError, match="3 sources has 2 targets"):
        PackedSplit.of(_split([[1], [2], [3]], [[1], [2]]))
