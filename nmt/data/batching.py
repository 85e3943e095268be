"""Batching, training and inference alike: which sentences share a batch, and their padding.

* :func:`pair_lengths` is the one length helper: ``(N, 2)`` source/target lengths of a split
  (the training task, the sampler and the bench read lengths through it).
* :class:`TokenBatchSampler` (training): each epoch a seeded permutation (seed, epoch) is cut
  into pools; inside a pool sentences are sorted by cost, ``max(src_len, tgt_len + 1)``, and
  packed greedily while ``batch_size * max cost`` stays within ``max_tokens`` (and the
  sentence count within ``max_sentences``); the batch order is then shuffled. Resumable
  mid-epoch, shardable for DDP.
* :func:`inference_batches` (translation): sentences longest first, packed the same way
  (no shuffling, no target side).
* Padding: :class:`Packed` holds many sequences in one flat tensor and pads any rows of it
  with one vectorized gather. :func:`pad` pads token id lists (decoding);
  :func:`collate` pads source/target pairs of a :class:`PackedSplit`, which the owner of a
  split (the training task) builds once and keeps: packing a split costs a pass over all
  its sentences, gathering from it is what makes each batch cheap.

In both samplers a sentence longer than the budget alone becomes a batch of one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from nmt.config import BOS_ID, EOS_ID, PAD_ID


def pair_lengths(split: Any) -> np.ndarray:
    """``(N, 2)`` int64 source and target lengths (no BOS/EOS) of a split: anything with
    ``src`` and ``tgt`` sequences, e.g. an ``EncodedSplit``. Give it to ``TokenBatchSampler``."""
    n = len(split.src)
    if len(split.tgt) != n:
        raise ValueError(f"a split with {n} sources has {len(split.tgt)} targets")
    out = np.empty((n, 2), dtype=np.int64)
    out[:, 0] = np.fromiter((len(x) for x in split.src), dtype=np.int64, count=n)
    out[:, 1] = np.fromiter((len(y) for y in split.tgt), dtype=np.int64, count=n)
    return out


class TokenBatchSampler:
    """Yields lists of example indices (a ``batch_sampler`` for ``torch.utils.data.DataLoader``).

    Args:
        lengths: ``(N, 2)`` source/target lengths (:func:`pair_lengths`; cost
            ``max(src, tgt + 1)``, ties broken by the source length), or a 1-D sequence of
            per-example costs.
        max_tokens: budget per batch counting padding (0 = none; then ``max_sentences`` rules).
        pool_size: sentences sorted together (0 = the whole data set: least padding; the
            composition still changes every epoch through random tie-breaks).
        num_shards, shard_id: every shard gets the same number of disjoint batches; when the
            batch count is not a multiple of ``num_shards`` the largest batches are split in two.
    """

    def __init__(
        self,
        lengths: Sequence[int] | Sequence[Sequence[int]] | np.ndarray | torch.Tensor,
        max_tokens: int,
        max_sentences: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        num_shards: int = 1,
        shard_id: int = 0,
        pool_size: int = 0,
    ) -> None:
        arr = np.asarray(
            lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64
        )
        if arr.ndim == 2:
            self.src_len = arr[:, 0]
            arr = np.maximum(arr[:, 0], arr[:, 1] + 1)
        else:
            self.src_len = arr
        if max_tokens <= 0 and max_sentences <= 0:
            raise ValueError("set max_tokens or max_sentences to a positive number")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id {shard_id} is not in [0, {num_shards})")
        self.costs = arr
        self.max_tokens, self.max_sentences = int(max_tokens), int(max_sentences)
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.num_shards, self.shard_id = int(num_shards), int(shard_id)
        self.pool_size = int(pool_size)
        self.epoch, self.position = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    # -- epoch plan ---------------------------------------------------------------------
    def _all_batches(self) -> list[list[int]]:
        """Every batch of this epoch, in order, before sharding."""
        n = len(self.costs)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        pool = self.pool_size if self.pool_size > 0 else max(n, 1)
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            # Sort by cost, then source length (less source padding); the permutation breaks ties.
            chunk = chunk[np.lexsort((self.src_len[chunk], self.costs[chunk]))]
            batches += self._pack(chunk)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _pack(self, chunk: np.ndarray) -> list[list[int]]:
        batches, current, width = [], [], 0
        for i, cost in zip(chunk.tolist(), self.costs[chunk].tolist()):
            new_width = max(width, cost)
            too_many = self.max_sentences > 0 and len(current) + 1 > self.max_sentences
            too_big = self.max_tokens > 0 and (len(current) + 1) * new_width > self.max_tokens
            if current and (too_many or too_big):
                batches.append(current)
                current, new_width = [], cost
            current.append(i)
            width = new_width
        if current:
            batches.append(current)
        return batches

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        extra = (-len(batches)) % self.num_shards
        # Split the largest batches until every shard can get the same number.
        for _ in range(extra):
            big = max(range(len(batches)), key=lambda j: len(batches[j]), default=None)
            if big is None or len(batches[big]) < 2:
                break
            b = batches[big]
            batches[big : big + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
        usable = len(batches) - len(batches) % self.num_shards  # only if splitting was impossible
        return batches[self.shard_id : usable : self.num_shards]

    def batches(self) -> list[list[int]]:
        """This shard's batches for the current epoch (computed once per epoch)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._shard(self._all_batches()))
        return self._cache[1]

    # -- iteration and state -----------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first batch."""
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        while self.position < len(batches):
            # Advance before handing out: a state saved after using this batch resumes after it.
            self.position += 1
            yield batches[self.position - 1]
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def inference_batches(
    lengths: Sequence[int], max_tokens: int, max_sentences: int = 0
) -> list[list[int]]:
    """Group sentence indices, longest first, so ``len(batch) * longest <= max_tokens``
    and (if ``max_sentences > 0``) ``len(batch) <= max_sentences``.

    Sorting by length keeps padding (and wasted compute) small; equal lengths keep their
    input order; an empty sentence counts as one token; a sentence longer than the budget
    gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, lengths[i])
        full = max_sentences > 0 and len(current) >= max_sentences
        if current and (full or max(longest, n) * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class Packed:
    """Sequences in one tensor: sequence ``i`` is ``flat[offsets[i] : offsets[i] + lengths[i]]``."""

    flat: torch.Tensor  # (total,) long
    offsets: torch.Tensor  # (N,)
    lengths: torch.Tensor  # (N,)

    @classmethod
    def of(cls, seqs: Sequence[torch.Tensor] | Sequence[Sequence[int]]) -> Packed:
        """Pack id tensors or lists of ints (all of one kind)."""
        lengths = torch.tensor([len(x) for x in seqs], dtype=torch.long)
        offsets = torch.cumsum(lengths, 0) - lengths
        if len(seqs) and isinstance(seqs[0], torch.Tensor):
            flat = torch.cat(list(seqs)).long()
        else:
            flat = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
        return cls(flat, offsets, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, idx: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """``(B, width)`` rows ``idx`` padded with ``PAD_ID`` (one vectorized gather);
        ``width`` defaults to the longest of those rows."""
        if width is None:
            width = int(self.lengths[idx].max()) if len(idx) else 0
        pos = torch.arange(width)
        mask = pos.unsqueeze(0) < self.lengths[idx].unsqueeze(1)
        if self.flat.numel() == 0:
            return torch.full(mask.shape, PAD_ID, dtype=torch.long)
        where = (self.offsets[idx].unsqueeze(1) + pos).clamp_(max=self.flat.numel() - 1)
        return torch.where(mask, self.flat[where], PAD_ID)


def pad(
    seqs: Sequence[Sequence[int]], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``src (batch, longest)`` padded with PAD_ID and ``lengths (batch,)``."""
    packed = Packed.of(seqs)
    src = packed.gather(torch.arange(len(packed)))
    return src.to(device), packed.lengths.to(device)


@dataclass
class Batch:
    """A padded batch; ``indices`` are the examples' positions in their split, row by row."""

    src: torch.Tensor  # (B, S)
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS + y
    tgt_out: torch.Tensor  # (B, T) y + EOS
    n_tgt_tokens: int  # non-pad tokens of tgt_out
    indices: torch.Tensor  # (B,)

    def __len__(self) -> int:
        return self.src.size(0)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``."""
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = (
                v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            )
        return Batch(**kw)


@dataclass(frozen=True)
class PackedSplit:
    """A split's sources and targets packed once, for :func:`collate`.

    Whoever batches a split builds this once (``PackedSplit.of(split)``) and keeps it for
    as long as it batches that split: packing is a pass over every sentence, a batch from
    it one gather per side (measured on 29k pairs: 0.12 s to pack, 2.4 ms per 4k-token
    batch; packing again for every batch made collating ~40x slower). It holds copies: a
    split changed afterwards needs a new ``PackedSplit``.
    """

    src: Packed
    tgt: Packed

    @classmethod
    def of(cls, split: Any) -> PackedSplit:
        """Pack an ``EncodedSplit`` (anything with ``src``/``tgt`` lists of id tensors)."""
        if len(split.src) != len(split.tgt):
            raise ValueError(f"a split with {len(split.src)} sources has {len(split.tgt)} targets")
        return cls(Packed.of(split.src), Packed.of(split.tgt))

    def __len__(self) -> int:
        return len(self.src)


def collate(packed: PackedSplit, indices: Sequence[int] | torch.Tensor) -> Batch:
    """Pad the examples ``indices`` of a packed split.

    Rows follow ``indices``; ``tgt_in`` = BOS + y and ``tgt_out`` = y + EOS, both ``(B, max|y| + 1)``.
    """
    if not isinstance(packed, PackedSplit):
        raise TypeError(
            f"collate takes a PackedSplit (PackedSplit.of(split)), not {type(packed).__name__}"
        )
    idx = torch.as_tensor(indices, dtype=torch.long).view(-1)
    src_lengths, tgt_lengths = packed.src.lengths[idx], packed.tgt.lengths[idx]
    b = len(idx)
    y = packed.tgt.gather(idx)
    tgt_in = torch.cat([torch.full((b, 1), BOS_ID, dtype=torch.long), y], dim=1)
    tgt_out = torch.cat([y, torch.full((b, 1), PAD_ID, dtype=torch.long)], dim=1)
    tgt_out[torch.arange(b), tgt_lengths] = EOS_ID
    return Batch(
        src=packed.src.gather(idx),
        src_lengths=src_lengths,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        n_tgt_tokens=int(tgt_lengths.sum()) + b,
        indices=idx,
    )
