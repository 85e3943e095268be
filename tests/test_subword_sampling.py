"""Subword regularisation (train.subword_alpha): sampled unigram segmentations per epoch,
seeded so that the same (seed, epoch) gives the same ids in any process."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from test_train_loop import make_cfg, train_killed_at_kill_step

from nmt.config import UNK_ID, TokenizerConfig
from nmt.config_checks import validate
from nmt.data.batching import PackedSplit, TokenBatchSampler, pair_lengths
from nmt.data.cleaning import clean_text
from nmt.data.subword_sampling import SegmentationSampler
from nmt.data.tokenizer import Tokenizer, train_model
from nmt.errors import ConfigError
from nmt.train import checkpoint as ckpt
from nmt.train.distributed import DistInfo
from nmt.train.run import train
from nmt.train.seq2seq_task import Seq2SeqTask


@pytest.fixture(scope="module")
def lines(tiny_parallel) -> list[str]:
    return [clean_text(x) for x in tiny_parallel["train_src"].read_text("utf-8").splitlines()]


def rows(flat: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [x.tolist() for x in torch.split(flat, lengths.tolist())]


def digest(flat: torch.Tensor, lengths: torch.Tensor) -> str:
    return hashlib.sha256(flat.numpy().tobytes() + lengths.numpy().tobytes()).hexdigest()


def task_for(tiny_parallel, *extra: str) -> Seq2SeqTask:
    return Seq2SeqTask(make_cfg(tiny_parallel, *extra), DistInfo(), torch.device("cpu"))


def test_alpha_zero_keeps_the_fixed_segmentation_and_its_batches(tiny_parallel):
    task = task_for(tiny_parallel)
    assert task.segmenters is None
    fixed = task.train_split
    expected = TokenBatchSampler(pair_lengths(fixed), max_tokens=600, seed=42)
    for epoch in (0, 1, 2):
        expected.set_epoch(epoch)
        assert task.epoch_batches(epoch) == expected.batches()
    assert torch.equal(task.train_packed.src.flat, PackedSplit.of(fixed).src.flat)
    assert torch.equal(task.train_packed.tgt.flat, PackedSplit.of(fixed).tgt.flat)


def test_each_epoch_gets_its_own_segmentation_of_the_same_text(tiny_parallel):
    task = task_for(tiny_parallel, "train.subword_alpha=0.2")
    fixed = PackedSplit.of(task.train_split)
    seen = []
    for epoch in (0, 1, 0):
        batches = task.epoch_batches(epoch)
        packed = task.train_packed
        assert sorted(i for b in batches for i in b) == list(range(len(task.train_split)))
        seen.append((packed.src.flat.clone(), packed.tgt.flat.clone()))
        for side, tok, text in (
            (packed.src, task.src_tok, task.data.train_text["src"]),
            (packed.tgt, task.tgt_tok, task.data.train_text["tgt"]),
        ):
            got = [tok.decode(side.gather(torch.tensor([i]))[0].tolist()) for i in range(len(text))]
            assert got == text  # other pieces, the same sentences, in the same order
        # The lengths the batches are cut by are this epoch's.
        assert np.array_equal(task.train_lengths[:, 0], packed.src.lengths.numpy())
    assert not torch.equal(seen[0][0], fixed.src.flat)  # sampled, not the fixed pieces
    assert not torch.equal(seen[0][0], seen[1][0])  # epoch 1 differs from epoch 0 ...
    assert not torch.equal(seen[0][1], seen[1][1])
    assert torch.equal(seen[0][0], seen[2][0])  # ... and epoch 0 comes back the same
    assert torch.equal(seen[0][1], seen[2][1])


def test_same_seed_gives_the_same_ids_in_this_and_another_process(tiny_tokenizer, lines):
    sampler = SegmentationSampler(tiny_tokenizer, lines, 0.3, -1)
    a, b, c = sampler.sample([7, 1, 0]), sampler.sample([7, 2, 0]), sampler.sample([7, 1, 0])
    assert digest(*a) == digest(*c) != digest(*b)
    # A new process (as a resumed run is): sentencepiece's own seeded sampling fails this.
    code = (
        "import hashlib, sys, torch\n"
        "from nmt.data.subword_sampling import SegmentationSampler\n"
        "from nmt.data.tokenizer import Tokenizer\n"
        "tok = Tokenizer(open(sys.argv[1], 'rb').read())\n"
        "lines = open(sys.argv[2], encoding='utf-8').read().split('\\n')\n"
        "flat, lengths = SegmentationSampler(tok, lines, 0.3, -1).sample([7, 1, 0])\n"
        "print(hashlib.sha256(flat.numpy().tobytes() + lengths.numpy().tobytes()).hexdigest())\n"
    )
    tmp = os.environ["NMT_CACHE_DIR"]
    model, text = os.path.join(tmp, "tok.model"), os.path.join(tmp, "lines.txt")
    with open(model, "wb") as f:
        f.write(tiny_tokenizer.model_proto)
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    out = subprocess.run(
        [sys.executable, "-c", code, model, text], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(*a)


def test_draws_follow_the_unigram_model_to_the_power_alpha(tiny_tokenizer, lines):
    alpha, n, sp = 0.5, 4000, tiny_tokenizer.sp

    def all_segmentations(word: str) -> list[tuple[int, ...]]:
        return [tuple(c) for c in sp.nbest_encode(word, nbest_size=512)]  # < 512: all

    words = sorted({w for line in lines for w in line.split(" ")})
    word = next(w for w in words if 4 <= len(all_segmentations(w)) <= 40)
    cands = all_segmentations(word)
    logw = np.array([alpha * sum(sp.get_score(i) for i in c) for c in cands])
    expected = dict(zip(cands, np.exp(logw - np.logaddexp.reduce(logw))))
    flat, lengths = SegmentationSampler(tiny_tokenizer, [word] * n, alpha, -1).sample([3])
    counts = Counter(tuple(r) for r in rows(flat, lengths))
    assert set(counts) <= set(expected)
    for cand, p in expected.items():
        assert abs(counts[cand] / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, cand


def test_nbest_draws_among_each_words_n_best(tiny_tokenizer, lines):
    sampler = SegmentationSampler(tiny_tokenizer, lines[:50], 0.5, 2)
    flat, lengths = sampler.sample([1])
    sp = tiny_tokenizer.sp
    changed = 0
    for line, ids in zip(lines[:50], rows(flat, lengths)):
        pos = 0
        for word in line.split(" "):
            best = [list(c) for c in sp.nbest_encode(word, nbest_size=2)]
            hit = [c for c in best if ids[pos : pos + len(c)] == c]
            assert hit, (word, ids[pos:])
            changed += hit[0] != best[0]
            pos += len(hit[0])
        assert pos == len(ids)
    assert changed > 0


def test_a_restricted_vocabulary_is_respected(tiny_lines, lines):
    # A joint model restricted to the English side: sampled English segmentations would
    # often use pieces seen only on the French side (or nowhere), which it no longer has.
    full = Tokenizer(train_model(tiny_lines, TokenizerConfig(vocab_size=200)))
    restricted = full.restricted(lines)
    kept = set(restricted.kept)
    unrestricted = SegmentationSampler(full, lines, 0.1, -1).sample([5])[0]
    assert set(unrestricted.tolist()) - kept - set(range(4))  # the test can fail ...
    flat, lengths = SegmentationSampler(restricted, lines, 0.1, -1).sample([5])
    assert int((flat == UNK_ID).sum()) == 0  # ... but no piece left the kept ones
    assert int(flat.max()) < restricted.vocab_size
    assert [restricted.decode(r) for r in rows(flat, lengths)] == lines
    fixed = restricted.encode_batch(lines, cleaned=True)
    assert rows(flat, lengths) != fixed


def test_a_sample_longer_than_max_len_keeps_the_fixed_segmentation(tiny_parallel):
    task = task_for(tiny_parallel, "train.subword_alpha=0.05", "data.max_len=40")
    task.epoch_batches(0)
    fixed_lengths = pair_lengths(task.train_split)
    assert task.train_lengths.max() <= 40
    kept_fixed = task.train_lengths == fixed_lengths
    assert kept_fixed.any() and not kept_fixed.all()
    _, sampled = task.segmenters[0].sample([42, 0, 0])  # epoch 0's source side, again
    too_long = torch.nonzero(sampled > 40).flatten().tolist()
    assert too_long
    for i in too_long:
        row = task.train_packed.src.gather(torch.tensor([i]))[0]
        assert torch.equal(row, task.train_split.src[i])


def test_kill_and_resume_with_sampling_reproduces_the_uninterrupted_run(tiny_parallel, tmp_path):
    extra = [
        "train.subword_alpha=0.2",
        "train.max_steps=40",  # past the end of epoch 0: the resumed run draws epoch 1 too
        "train.valid_every=5",
        "model.dropout=0.1",
        "train.lr=3e-3",
        "train.patience=0",
    ]
    full = tmp_path / "full"
    train(make_cfg(tiny_parallel, *extra), out_dir=full)
    assert ckpt.load_checkpoint(full / "last.pt")["epoch"] >= 1
    killed = tmp_path / "killed"
    train_killed_at_kill_step(tiny_parallel, extra, killed)
    train(make_cfg(tiny_parallel, *extra, "train.resume=true"), out_dir=killed)
    a, b = ckpt.load_checkpoint(full / "last.pt"), ckpt.load_checkpoint(killed / "last.pt")
    assert a["step"] == b["step"] == 40
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["train.subword_alpha=-0.1"], r"train.subword_alpha=-0.1 must be in \[0, 1\]"),
        (["train.subword_alpha=1.5"], r"train.subword_alpha=1.5 must be in \[0, 1\]"),
        (["train.subword_nbest=0"], "train.subword_nbest=0 must be -1"),
        (["train.subword_nbest=1"], "train.subword_nbest=1 must be -1"),
        (["train.subword_nbest=513"], "train.subword_nbest=513 must be -1"),
        (
            ["train.subword_alpha=0.1", "model.arch=char_lm", "model.attention=none"],
            "model.arch=char_lm reads characters",
        ),
        (
            ["train.subword_alpha=0.1", "tokenizer.model_type=bpe"],
            "tokenizer.model_type=bpe does not have",
        ),
        (["train.subword_alpha=0.1", "tokenizer.model_type=word"], "model_type=word does not"),
    ],
)
def test_config_checks_refuse(tiny_parallel, extra, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(tiny_parallel, *extra))


@pytest.mark.parametrize(
    "extra",
    [
        ["train.subword_alpha=0.1"],
        ["train.subword_alpha=1.0", "train.subword_nbest=64"],
        ["tokenizer.model_type=bpe"],  # off: any tokenizer
    ],
)
def test_config_checks_accept(tiny_parallel, extra):
    validate(make_cfg(tiny_parallel, *extra))
