"""Translation as a training task: data, model, batches, loss and validation (BLEU/chrF)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from nmt.config import PAD_ID
from nmt.data.batching import Batch, PackedSplit, TokenBatchSampler, collate, pair_lengths
from nmt.data.prepare import EncodedSplit, prepare
from nmt.data.subword_sampling import SegmentationSampler
from nmt.devices import to_device
from nmt.errors import ConfigError, DataError
from nmt.models.builder import build_model
from nmt.models.embeddings import apply_pretrained, wants_vectors
from nmt.scoring import score
from nmt.search.lexical_table import LEXICAL_KEY, LexicalTable
from nmt.search.translator import Translator
from nmt.train.distributed import DistInfo, all_reduce, barrier
from nmt.train.loss import Seq2SeqObjective

METRICS = {"bleu": True, "chrf": True, "loss": False}  # name -> higher is better


class Seq2SeqTask:
    """Everything the generic :class:`~nmt.train.trainer.Trainer` needs for translation."""

    def __init__(self, cfg: DictConfig, info: DistInfo, device: torch.device) -> None:
        tc = cfg.train
        if tc.valid_metric not in METRICS:
            raise ConfigError(
                f"train.valid_metric={tc.valid_metric!r} is unknown: use bleu, chrf or loss"
            )
        self.cfg, self.info, self.device = cfg, info, device
        self.metric_name = tc.valid_metric
        self.higher_is_better = METRICS[tc.valid_metric]
        # Rank 0 prepares (downloads, tokenizes, caches); the others then read the cache.
        if info.is_main:
            data = prepare(cfg)
        barrier(info)
        if not info.is_main:
            data = prepare(cfg)
        self.data = data
        self.src_tok, self.tgt_tok = data.src_tok, data.tgt_tok
        self.train_split = data.splits["train"]
        valid_name = cfg.data.valid_split
        if valid_name not in data.splits:
            raise ConfigError(
                f"data.valid_split={valid_name!r} is not among the prepared splits "
                f"({', '.join(data.splits)}): set data.valid_split"
            )
        self.valid_split = data.splits[valid_name]
        if len(self.valid_split) == 0:
            raise DataError(
                f"the validation split {valid_name!r} of data={cfg.data.name} is empty: give it "
                "sentence pairs (data.local.valid_src/valid_tgt, or data.held_out.valid_size "
                "for tatoeba)"
            )
        self.model = build_model(cfg.model, self.src_tok.vocab_size, self.tgt_tok.vocab_size)
        # For decode.shortlist, saved in every checkpoint (seconds for Multi30k).
        self.lexical = LexicalTable.build(
            self.train_split.src,
            self.train_split.tgt,
            self.src_tok.vocab_size,
            self.tgt_tok.vocab_size,
        )
        self.coverage = self._pretrained_embeddings()
        self.objective = Seq2SeqObjective(self.model, tc.label_smoothing)
        # Packed once here and kept: every batch is gathered from them (nmt.data.batching).
        self.train_packed = PackedSplit.of(self.train_split)
        self.valid_packed = PackedSplit.of(self.valid_split)
        self.train_lengths = pair_lengths(self.train_split)
        self.sampler = self._train_sampler(self.train_lengths)
        # train.subword_alpha > 0: each epoch gets its own segmentation (epoch_batches).
        self.segmenters = self._segmenters() if tc.subword_alpha > 0 else None
        self.segmented_epoch: int | None = None
        self._valid_loss_batches = TokenBatchSampler(
            pair_lengths(self.valid_split), max_tokens=tc.max_tokens, shuffle=False
        )

    def _pretrained_embeddings(self) -> dict | None:
        emb = self.cfg.embeddings
        if not wants_vectors(emb):
            return None
        report = apply_pretrained(
            self.model,
            emb,
            self.src_tok,
            self.tgt_tok,
            self.data.train_text,
            self.cfg.data.cache_dir,
            mirror=self.cfg.data.mirror,
            langs={"src": self.cfg.data.src_lang, "tgt": self.cfg.data.tgt_lang},
        )
        return report  # one line per side is logged; the trainer writes it to embeddings.json

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        summary = self.data.summary() if hasattr(self.data, "summary") else ""
        return (
            f"{summary}\nmodel: {self.cfg.model.cell} {self.cfg.model.attention} | "
            f"{n_params:,} parameters ({n_train:,} trainable) | "
            f"{self.batches_per_epoch()} batches/epoch on this rank"
        )

    # --- batches -------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return len(self.sampler)

    def _train_sampler(self, lengths) -> TokenBatchSampler:
        tc = self.cfg.train
        return TokenBatchSampler(
            lengths,
            max_tokens=tc.max_tokens,
            max_sentences=tc.max_sentences,
            seed=tc.seed,
            shuffle=True,
            num_shards=self.info.world_size,
            shard_id=self.info.rank,
        )

    def _segmenters(self) -> tuple[SegmentationSampler, SegmentationSampler]:
        """One sampler per side over the training split's cleaned text (same pairs, same order)."""
        text, tc = self.data.train_text, self.cfg.train
        if len(text["src"]) != len(self.train_split) or len(text["tgt"]) != len(self.train_split):
            raise DataError(
                "the prepared training text does not match the training split: delete the "
                f"prepared cache ({self.data.cache_path}) and run again"
            )
        return (
            SegmentationSampler(self.src_tok, text["src"], tc.subword_alpha, tc.subword_nbest),
            SegmentationSampler(self.tgt_tok, text["tgt"], tc.subword_alpha, tc.subword_nbest),
        )

    def _segment(self, epoch: int) -> None:
        """Sample ``epoch``'s segmentation of the training split, seeded by (train.seed, epoch),
        and rebuild what batches read from it: the packed split, the lengths, the sampler.

        The pairs and their order stay those of the fixed split (prepare's cleaning and
        length filter ran on the fixed segmentation). A side whose sample is longer than
        ``data.max_len`` keeps its fixed segmentation, so that bound still holds.
        """
        if self.segmenters is None or self.segmented_epoch == epoch:
            return
        fixed, max_len = self.train_split, self.cfg.data.max_len
        sides = []
        for k, (segmenter, fixed_side) in enumerate(zip(self.segmenters, (fixed.src, fixed.tgt))):
            flat, lengths = segmenter.sample([self.cfg.train.seed, epoch, k])
            seqs = list(torch.split(flat, lengths.tolist()))
            for i in torch.nonzero(lengths > max_len).flatten().tolist():
                seqs[i] = fixed_side[i]
            sides.append(seqs)
        split = EncodedSplit("train", sides[0], sides[1])
        self.train_packed = PackedSplit.of(split)
        self.train_lengths = pair_lengths(split)
        self.sampler = self._train_sampler(self.train_lengths)
        self.segmented_epoch = epoch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches (lists of example indices) of ``epoch``, in order (with
        ``train.subword_alpha > 0`` over that epoch's own segmentation)."""
        self._segment(epoch)
        self.sampler.set_epoch(epoch)
        batches = [list(b) for b in self.sampler.batches()]
        if self.info.enabled:
            # DDP needs the same number of steps on every rank.
            dev = self.device if self.device.type == "cuda" else torch.device("cpu")
            n = torch.tensor([float(len(batches))], device=dev)
            batches = batches[: int(all_reduce(n, self.info, "min").item())]
        return batches

    def start_epoch(self) -> None:
        pass

    def n_tokens(self, indices: list[int]) -> int:
        return int(self.train_lengths[indices, 1].sum()) + len(indices)  # y + EOS

    def forward(self, objective, indices: list[int]):
        return batch_loss(objective, collate(self.train_packed, indices), self.device)

    # --- validation ----------------------------------------------------------------------
    def valid_summary(self) -> str:
        """What validation does, for the line announcing it."""
        n = self.cfg.train.valid_max_sentences or len(self.valid_split.src_text)
        n = min(n, len(self.valid_split.src_text))
        dec = self.valid_decode_cfg()
        search = "greedy" if dec.method == "greedy" else f"beam {dec.beam_size}"
        return (
            f"loss on {len(self.valid_split.src_text)} pairs, BLEU/chrF of {n} sentences ({search})"
        )

    @torch.no_grad()
    def validate(self, model, progress: Callable[[int, int, str], None] | None = None) -> dict:
        """Validation NLL/perplexity (teacher forcing) and BLEU/chrF of decoded output.
        ``progress(done, total, what)`` is called as sentences are decoded."""
        model.eval()
        try:
            objective = Seq2SeqObjective(model, 0.0)
            nll, tokens = 0.0, 0
            for indices in self._valid_loss_batches:
                batch = collate(self.valid_packed, list(indices)).to(self.device)
                _, nll_sum = objective(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
                nll += float(nll_sum)
                tokens += int(batch.n_tgt_tokens)
            loss = nll / max(tokens, 1)
            result: dict[str, Any] = {"loss": loss, "ppl": math.exp(min(loss, 100.0))}
            result.update(self._bleu(model, progress))
        finally:
            model.train()
        return result

    def _bleu(self, model, progress: Callable[[int, int, str], None] | None) -> dict[str, Any]:
        n = self.cfg.train.valid_max_sentences or len(self.valid_split.src_text)
        sources = list(self.valid_split.src_text[:n])
        refs = list(self.valid_split.tgt_text[:n])
        translator = Translator(
            model,
            self.src_tok,
            self.tgt_tok,
            self.valid_decode_cfg(),
            self.device,
            warn=lambda m: None,
            lexical=self.lexical,
        )
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, len(sources), "sentences decoded")

        hyps = [
            r[0].text if r else "" for r in translator.translate_nbest(sources, progress=advance)
        ]
        scores = score(hyps, [refs], metrics=("bleu", "chrf"))
        return {"bleu": _value(scores, "bleu"), "chrf": _value(scores, "chrf"), "n_sentences": n}

    def valid_decode_cfg(self):
        """The decode config of validation: greedy, or beam with ``train.valid_beam_size``."""
        dec = copy.deepcopy(self.cfg.decode)
        beam = self.cfg.train.valid_beam_size
        dec.method = "greedy" if beam <= 1 else "beam"
        dec.beam_size = max(1, beam)
        dec.n_best = 1
        return dec

    # --- checkpoint pieces ---------------------------------------------------------------
    def tokenizer_payload(self) -> dict[str, Any]:
        return {
            "src_tokenizer": self.src_tok.state_dict(),
            "tgt_tokenizer": self.tgt_tok.state_dict(),
            LEXICAL_KEY: self.lexical.state_dict(),
        }

    def state_dict(self) -> dict:
        """Nothing beyond the trainer's: the epoch's batch order is drawn again from the
        sampler's seed and the epoch, and the trainer records the position in it."""
        return {}

    def load_state_dict(self, state: dict | None, device: torch.device) -> None:
        pass

    def finish(self, out) -> list[str]:
        return []


def batch_loss(objective, batch: Batch, device: torch.device) -> tuple[Tensor, Tensor]:
    """``objective``'s ``(loss_sum, nll_sum)`` of a host ``batch`` on ``device`` (a training step).

    On a GPU the step must never wait for the device, so nothing in it copies back: the
    source lengths stay on the host (packing sorts them there, :func:`nmt.models.rnn.run_packed`),
    the positions of the real target tokens are found here (the loss needs their count to
    size its rows), and the tensors go over through pinned memory without blocking.
    (Under DDP the wrapper moves every input to the GPU, lengths included: correct, with
    one more wait.)
    """
    if device.type != "cuda":
        return objective(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)
    keep = (batch.tgt_out.reshape(-1) != PAD_ID).nonzero().squeeze(1)
    src, tgt_in, tgt_out, keep = (
        to_device(t, device) for t in (batch.src, batch.tgt_in, batch.tgt_out, keep)
    )
    return objective(src, batch.src_lengths, tgt_in, tgt_out, keep)


def _value(scores: Any, name: str) -> float:
    """Read one metric from whatever ``nmt.scoring.score`` returns (a dict or objects)."""
    item = scores[name] if isinstance(scores, dict) else getattr(scores, name)
    if isinstance(item, (int, float)):
        return float(item)
    if isinstance(item, dict):
        return float(item.get("score", item.get("value")))
    return float(item.score)
