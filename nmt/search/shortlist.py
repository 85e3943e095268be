"""Lexical shortlists: each sentence's output layer cut to the target pieces it can use.

The output layer and its log-softmax are most of a CPU decoder step (a ``vocab x hidden``
product per hypothesis). As in Marian, a sentence's candidates are the table rows of its
source pieces (:mod:`nmt.search.lexical_table`: the ``decode.shortlist`` best target pieces
of each), the ``decode.shortlist_frequent`` most frequent target pieces, and EOS and UNK;
a step computes logits for those ``C`` pieces only (``C`` is a few hundred of Multi30k's
5,470) and normalises over them. PAD and BOS are never candidates: no search emits them
(:func:`~nmt.search.constraints.constrain`).

:class:`ShortlistSeq2Seq` is a search view (the contract of :class:`~nmt.models.seq2seq.Seq2Seq`:
``encode``, ``init_state``, ``reorder_state``, ``step``) around a model or its table-step view
(:mod:`nmt.search.table_step`, so both gains add up). Its ``encode`` gathers each
sentence's ``C`` output rows once, ``(batch, C, hidden)``; its ``step`` runs one batched
matmul and returns full-vocabulary log-probabilities, ``-inf`` outside the candidates, so
beam, greedy, sampling, prefixes, constraints and ensembles run unchanged. The candidates
travel in the encoder output (:class:`ShortlistEncoderOutput`), which every search already
follows through ``index_select`` (beam expansion, finished sentences leaving the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.config import EOS_ID, UNK_ID
from nmt.errors import ConfigError
from nmt.models.decoder import DecoderState
from nmt.models.seq2seq import Seq2Seq
from nmt.search.ensemble import Ensemble
from nmt.search.lexical_table import LexicalTable, build_lexical_table
from nmt.search.table_step import TableStepSeq2Seq

__all__ = [
    "LexicalTable",
    "Shortlist",
    "ShortlistEncoderOutput",
    "ShortlistSeq2Seq",
    "build_lexical_table",
    "shortlist_view",
]

SPECIALS = (EOS_ID, UNK_ID)  # always candidates: every sentence ends, UNK is the fallback
NEG_INF = float("-inf")
REGATHER_BELOW = 0.75  # gather the sentences' layers again when fewer are still in use


@dataclass
class Shortlist:
    """``table (src_vocab, K)`` target ids (negative = none), ``always (N,)`` ids every
    sentence gets (frequent pieces and specials), over a ``vocab_size`` target vocabulary."""

    table: Tensor
    always: Tensor
    vocab_size: int

    @classmethod
    def of(cls, lexical: LexicalTable, k: int, frequent: int = 100) -> Shortlist:
        """``k`` table entries per source piece and the ``frequent`` most frequent pieces.

        Raises:
            ConfigError: ``k`` outside ``1..`` the table's width.
        """
        width = lexical.table.size(1)
        if not 1 <= k <= width:
            raise ConfigError(
                f"decode.shortlist={k} must be between 1 and {width}, the candidates per "
                "source piece the lexical table holds"
            )
        specials = torch.tensor(SPECIALS, dtype=torch.long)
        always = torch.cat([lexical.by_frequency[:frequent].long(), specials]).unique()
        return cls(lexical.table[:, :k].long(), always, int(lexical.by_frequency.numel()))

    def candidates(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        """``src (batch, src_len)``, ``src_lengths (batch,)`` -> ``(batch, C)`` target ids, each
        row sorted and distinct, then padded to the longest row by repeating its last id
        (:func:`candidate_mask` finds the padding)."""
        batch, src_len = src.shape
        device, vocab = src.device, self.vocab_size
        rows = self.table.to(device)[src]  # (batch, src_len, K)
        real = torch.arange(src_len, device=device) < src_lengths.to(device).unsqueeze(1)
        rows = rows.masked_fill(~real.unsqueeze(2), -1).view(batch, -1)
        # Membership per target id; table fillers and padding land in a dropped last column.
        member = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=device)
        member.scatter_(1, rows.masked_fill(rows < 0, vocab), True)
        member = member[:, :vocab]
        member[:, self.always.to(device)] = True
        counts = member.sum(1)
        ids = torch.arange(vocab, device=device).expand(batch, vocab)
        ids = torch.where(member, ids, vocab).sort(dim=1).values[:, : int(counts.max())]
        last = ids.gather(1, (counts - 1).unsqueeze(1))
        return torch.where(ids == vocab, last, ids)

    def sizes(self, sentences: list[list[int]], chunk: int = 256) -> list[int]:
        """The number of candidates ``C`` of each sentence (source piece ids; for reports)."""
        out: list[int] = []
        for i in range(0, len(sentences), chunk):
            part = [s or [EOS_ID] for s in sentences[i : i + chunk]]
            lengths = torch.tensor([len(s) for s in part])
            src = torch.zeros(len(part), int(lengths.max()), dtype=torch.long)
            for row, s in enumerate(part):
                src[row, : len(s)] = torch.tensor(s)
            out += candidate_mask(self.candidates(src, lengths)).sum(1).tolist()
        return out


def candidate_mask(ids: Tensor) -> Tensor:
    """``(batch, C)`` True for a real candidate of :meth:`Shortlist.candidates`' output, False
    for padding (a repeat of the id before it)."""
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, 1:] = ids[:, 1:] != ids[:, :-1]
    return mask


class Scratch:
    """Storage reused for the gathered output rows, one buffer per key.

    A batch's rows are ~100 MB for 90 sentences; a fresh tensor of that size costs more in
    page faults than the copy itself (measured: a 137 MB gather took 259 ms into a new
    tensor, ~25 ms into a reused one), so the rows are written into these buffers. A view
    therefore runs one search at a time, as the Translator, its workers and the server do.
    """

    def __init__(self) -> None:
        self._store: dict[str, Tensor] = {}

    def _buffer(self, key: str, like: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Buffer ``key`` viewed as ``shape``, with ``like``'s dtype and device (regrown when
        too small)."""
        numel = 1
        for size in shape:
            numel *= size
        buf = self._store.get(key)
        if (
            buf is None
            or buf.numel() < numel
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = like.new_empty(max(numel, 1))
            self._store[key] = buf
        return buf[:numel].view(shape)

    def rows(self, key: str, source: Tensor, index: Tensor) -> Tensor:
        """``source.index_select(0, index)`` written into buffer ``key``."""
        out = self._buffer(key, source, (index.numel(), *source.shape[1:]))
        return torch.index_select(source, 0, index, out=out)

    def transposed(self, key: str, source: Tensor) -> Tensor:
        """``source (n, a, b)`` as a contiguous ``(n, b, a)`` written into buffer ``key``."""
        n, a, b = source.shape
        return self._buffer(key, source, (n, b, a)).copy_(source.transpose(1, 2))


@dataclass
class CandidateLayer:
    """The output layer of some sentences cut to their candidates: ``ids (n, C)``,
    ``weight_t (n, H, C)``, ``bias (n, C)`` (``-inf`` at padding, so it never wins and adds
    nothing to the softmax). The weights are stored transposed because the step's batched
    product ``x (n, w, H) @ weight_t`` ran 2.4x faster from a contiguous ``(n, H, C)`` than
    from a transposed view of ``(n, C, H)`` (1 thread, bench model, 32 sentences)."""

    ids: Tensor
    weight_t: Tensor
    bias: Tensor

    def select(self, index: Tensor, scratch: Scratch) -> CandidateLayer:
        """The layers of sentences ``index``, the weights into ``scratch``'s "layer" buffer."""
        weight_t = scratch.rows("layer", self.weight_t, index)
        return CandidateLayer(
            self.ids.index_select(0, index), weight_t, self.bias.index_select(0, index)
        )


@dataclass
class ShortlistEncoderOutput:
    """The inner model's encoder output and the candidates of its rows.

    ``batch`` holds the layer of every sentence of the batch, gathered once; ``row_sent
    (rows,)`` is each row's sentence. Rows come in ``group_size`` adjacent rows per sentence
    (beam search's layout; 1 for greedy search), ``groups (n,)`` being those sentences.
    ``layer`` holds the layers of ``layer_sents (m,)``, a superset of the groups: the
    ``n`` groups sit at ``pos (n,)`` in it (None when ``layer_sents`` is ``groups``).
    A sentence leaving the batch would cost a copy of the remaining layers, as much
    memory traffic as a step, so they are gathered again only once fewer than
    :data:`REGATHER_BELOW` of them are still used.
    """

    inner: object
    batch: CandidateLayer
    row_sent: Tensor
    groups: Tensor
    group_size: int
    layer: CandidateLayer
    layer_sents: Tensor
    scratch: Scratch
    pos: Tensor | None = None

    @property
    def mask(self) -> Tensor:
        return self.inner.mask

    @property
    def memory(self) -> Tensor:
        return self.inner.memory

    @property
    def lengths(self) -> Tensor:
        return self.inner.lengths

    def index_select(self, index: Tensor) -> ShortlistEncoderOutput:
        """Select/repeat/reorder rows, as the inner output does."""
        row_sent = self.row_sent.index_select(0, index)
        groups, size = _group_rows(row_sent)
        inner = self.inner.index_select(index)
        if groups.shape == self.groups.shape and torch.equal(groups, self.groups):
            layer, sents, pos = self.layer, self.layer_sents, self.pos
        else:
            layer, sents, pos = self.layer, self.layer_sents, self._positions(groups)
            if pos is None:
                layer, sents = self.batch.select(groups, self.scratch), groups
        return ShortlistEncoderOutput(
            inner, self.batch, row_sent, groups, size, layer, sents, self.scratch, pos
        )

    def _positions(self, groups: Tensor) -> Tensor | None:
        """Where ``groups`` sit in ``layer_sents``, or None when the layers should be
        gathered again: a group missing or repeated, or too few of them left in use."""
        m, n = self.layer_sents.numel(), groups.numel()
        if n < REGATHER_BELOW * m or torch.unique(groups).numel() != n:
            return None
        where = torch.full((self.batch.ids.size(0),), -1, dtype=torch.long, device=groups.device)
        where[self.layer_sents] = torch.arange(m, device=groups.device)
        pos = where[groups]
        return pos if bool((pos >= 0).all()) else None

    def log_probs(self, x: Tensor, vocab: int) -> Tensor:
        """``x (rows, H)`` -> ``(rows, vocab)`` log-probabilities over each row's candidates,
        ``-inf`` elsewhere."""
        rows, w = x.size(0), self.group_size
        x = x.view(-1, w, x.size(-1))  # (n, w, H)
        ids = self.layer.ids
        if self.pos is not None:  # rows of sentences that left stay zero, then are dropped
            x = x.new_zeros(ids.size(0), w, x.size(-1)).index_copy_(0, self.pos, x)
        logits = torch.baddbmm(self.layer.bias.unsqueeze(1), x, self.layer.weight_t)  # (m, w, C)
        if self.pos is not None:
            logits, ids = logits.index_select(0, self.pos), ids.index_select(0, self.pos)
        lp = torch.log_softmax(logits, dim=-1).view(rows, -1)
        if w > 1:
            ids = ids.repeat_interleave(w, dim=0)
        # amax: a padding slot repeats a real id with -inf, so the real value always wins.
        return lp.new_full((rows, vocab), NEG_INF).scatter_reduce_(1, ids, lp, "amax")


def _group_rows(row_sent: Tensor) -> tuple[Tensor, int]:
    """``(groups, size)`` when ``row_sent`` is ``groups`` each repeated ``size`` times in a
    row (beam search), else ``(row_sent, 1)``: one group per row."""
    n_rows = row_sent.numel()
    starts = torch.ones(n_rows, dtype=torch.bool, device=row_sent.device)
    starts[1:] = row_sent[1:] != row_sent[:-1]
    n = int(starts.sum())
    if n and n < n_rows and n_rows % n == 0:
        size = n_rows // n
        groups = row_sent[::size]
        if torch.equal(groups.repeat_interleave(size), row_sent):
            return groups, size
    return row_sent, 1


class ShortlistSeq2Seq(nn.Module):
    """A search view whose steps compute the output layer for each sentence's candidates only.

    Args:
        inner: a :class:`Seq2Seq` (fp32 or int8: an int8 output layer's rows are used
            dequantized, gathered once per batch) or its :class:`TableStepSeq2Seq`.
        shortlist: the candidates' source.
    """

    def __init__(self, inner: nn.Module, shortlist: Shortlist) -> None:
        super().__init__()
        self.inner = inner
        model = inner.model if isinstance(inner, TableStepSeq2Seq) else inner
        if not isinstance(model, Seq2Seq):
            raise ConfigError(
                f"decode.shortlist needs a translation model, not {type(model).__name__}"
            )
        self.decoder = model.decoder
        self.shortlist = shortlist
        self.scratch = Scratch()
        out = self.decoder.out
        self._dequantized: tuple[Tensor, Tensor | None] | None = None
        if not isinstance(out, nn.Linear):  # int8 (nmt.models.quantize): packed weights
            self._dequantized = (out.weight().dequantize(), out.bias())

    def _output_layer(self) -> tuple[Tensor, Tensor | None]:
        """``weight (V, H)``, ``bias (V,)`` | None of the output layer, fp32."""
        if self._dequantized is not None:
            return self._dequantized
        return self.decoder.out.weight, self.decoder.out.bias

    def encode(self, src: Tensor, src_lengths: Tensor) -> ShortlistEncoderOutput:
        """The inner encoding, and each sentence's output rows gathered once."""
        enc = self.inner.encode(src, src_lengths)
        ids = self.shortlist.candidates(src, src_lengths)
        weight, bias = self._output_layer()
        n, c = ids.shape
        rows = self.scratch.rows("gather", weight, ids.view(-1)).view(n, c, -1)
        rows = self.scratch.transposed("batch", rows)  # (n, H, C)
        b = bias.index_select(0, ids.view(-1)).view(n, c) if bias is not None else None
        b = rows.new_zeros(n, c) if b is None else b.to(rows.dtype)
        layer = CandidateLayer(ids, rows, b.masked_fill(~candidate_mask(ids), NEG_INF))
        every = torch.arange(n, device=src.device)
        return ShortlistEncoderOutput(enc, layer, every, every, 1, layer, every, self.scratch)

    def init_state(self, enc: ShortlistEncoderOutput) -> DecoderState:
        return self.inner.init_state(enc.inner)

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        return self.inner.reorder_state(state, index)

    def step(
        self, prev_tokens: Tensor, state: DecoderState, enc: ShortlistEncoderOutput
    ) -> tuple[Tensor, Tensor | None, DecoderState]:
        """As :meth:`Seq2Seq.step`: ``prev_tokens (rows,)`` -> log-probs ``(rows, vocab)``
        (``-inf`` outside each row's candidates), attention ``(rows, src_len)`` | None, state."""
        if isinstance(self.inner, TableStepSeq2Seq):
            feat, attn, state = self.inner.step_features(prev_tokens, state, enc.inner)
        else:
            feat, attn, state = self.decoder.step(prev_tokens, state, enc.inner)
        if self.decoder.pre_output is not None:
            feat = self.decoder.pre_output(feat)
        return enc.log_probs(feat, self.shortlist.vocab_size), attn, state


def shortlist_view(model: nn.Module, shortlist: Shortlist) -> nn.Module:
    """``model`` (a search view: :func:`~nmt.search.table_step.search_view`'s result) with
    each translation model's output layer cut to the shortlist (each member of an
    :class:`Ensemble`)."""
    if isinstance(model, Ensemble):
        return Ensemble([shortlist_view(m, shortlist) for m in model.members])
    return ShortlistSeq2Seq(model, shortlist)
