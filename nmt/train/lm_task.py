"""The character language model as a training task: truncated back-propagation through time.

The training text is cut into ``train.char_lm.batch_size`` parallel streams; step ``i``
reads the ``i``-th chunk of ``train.char_lm.bptt_len`` characters of every stream. The
recurrent state is carried from one chunk to the next (so the model sees long contexts) but
detached at chunk borders (so gradients stop there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from nmt.data.charvocab import NOT_TEXT
from nmt.data.prepare import prepare_text
from nmt.devices import to_device
from nmt.models.builder import build_model
from nmt.search.sampling_lm import sample_lm
from nmt.train.distributed import DistInfo, barrier
from nmt.train.loss import LMObjective

SAMPLE_CHARS = 1000


def streams(data: Tensor, n_streams: int) -> Tensor:
    """Cut a 1-D id tensor into ``(n_streams, length)`` contiguous streams (tail dropped)."""
    length = data.numel() // n_streams
    return data[: n_streams * length].view(n_streams, length)


class LMTask:
    """Everything the generic :class:`~nmt.train.trainer.Trainer` needs for the char LM."""

    metric_name = "loss"
    higher_is_better = False

    def __init__(self, cfg: DictConfig, info: DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        tc = cfg.train
        if info.is_main:
            data = prepare_text(cfg)
        barrier(info)
        if not info.is_main:
            data = prepare_text(cfg)
        self.data, self.vocab = data, data.vocab
        self.bptt, batch = tc.char_lm.bptt_len, tc.char_lm.batch_size
        # Each rank owns its own block of streams (a contiguous slice of the text).
        all_streams = streams(data.train, batch * info.world_size)
        self.train = all_streams[info.rank * batch : (info.rank + 1) * batch]
        # Validation reads many streams at once (no gradients: wide batches are cheap).
        self.val = streams(
            data.val, max(1, min(max(batch, 32), data.val.numel() // (self.bptt + 1)))
        )
        n_vocab = len(self.vocab)
        self.model = build_model(cfg.model, n_vocab, n_vocab)
        self.objective = LMObjective(self.model, tc.label_smoothing)
        self.state = None

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"char LM: {self.data.train.numel():,} train / {self.data.val.numel():,} val chars, "
            f"vocab {len(self.vocab)} | {n_params:,} parameters | "
            f"{self.batches_per_epoch()} chunks/epoch of {self.train.size(0)}x{self.bptt}"
        )

    # --- batches -------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        return max(0, (self.train.size(1) - 1 + self.bptt - 1) // self.bptt)

    def epoch_batches(self, epoch: int) -> list[int]:
        return list(range(self.batches_per_epoch()))

    def start_epoch(self) -> None:
        self.state = None  # each epoch starts reading the streams from their beginning

    def _chunk(self, data: Tensor, i: int) -> tuple[Tensor, Tensor]:
        start = i * self.bptt
        end = min(start + self.bptt, data.size(1) - 1)
        return data[:, start:end], data[:, start + 1 : end + 1]

    def n_tokens(self, i: int) -> int:
        x, _ = self._chunk(self.train, i)
        return x.numel()

    def forward(self, objective, i: int):
        x, y = self._chunk(self.train, i)
        x, y = to_device(x, self.device), to_device(y, self.device)  # pinned, not blocking
        loss, nll, state = objective(x, y, self.state)
        self.state = self.model.detach_state(state)
        return loss, nll

    # --- validation ----------------------------------------------------------------------
    def valid_summary(self) -> str:
        """What validation does, for the line announcing it."""
        rows, cols = self.val.shape  # the val text as parallel streams, like the train text
        return f"loss on {rows * (cols - 1):,} characters ({rows} streams)"

    @torch.no_grad()
    def validate(self, model, progress: Callable[[int, int, str], None] | None = None) -> dict:
        """Validation loss in nats/char and bits/char (state carried across the val text).
        ``progress(done, total, what)`` is called after each chunk."""
        model.eval()
        try:
            objective = LMObjective(model, 0.0)
            state, nll, count = None, 0.0, 0
            n_chunks = (self.val.size(1) - 1 + self.bptt - 1) // self.bptt
            for i in range(n_chunks):
                x, y = self._chunk(self.val, i)
                _, s, state = objective(x.to(self.device), y.to(self.device), state)
                nll += float(s)
                count += y.numel()
                if progress is not None:
                    progress(i + 1, n_chunks, "chunks")
        finally:
            model.train()
        loss = nll / max(count, 1)
        return {"loss": loss, "bits_per_char": loss / math.log(2), "ppl": math.exp(min(loss, 100))}

    # --- checkpoint pieces ---------------------------------------------------------------
    def tokenizer_payload(self) -> dict[str, Any]:
        state = vocab_state(self.vocab)
        return {"src_tokenizer": state, "tgt_tokenizer": state}

    def state_dict(self) -> dict:
        """The carried recurrent state, so a resumed run continues the streams exactly."""
        return {"state": _to_plain_state(self.state)}

    def load_state_dict(self, state: dict | None, device: torch.device) -> None:
        if state and state.get("state") is not None:
            self.state = _from_plain_state(state["state"], device)

    def finish(self, out: Path) -> list[str]:
        text = self.sample(SAMPLE_CHARS)
        path = Path(out) / "sample.txt"
        path.write_text(text + "\n", encoding="utf-8")
        return [f"  sample {path}"]

    @torch.no_grad()
    def sample(self, n_chars: int) -> str:
        """A sample from the trained model (``nmt.search.sampling_lm.sample_lm``)."""
        dec = self.cfg.decode
        prompt = self.vocab.encode("\n").tolist() or [int(self.data.val[0])]
        generator = torch.Generator(device=self.device).manual_seed(dec.seed)
        self.model.eval()
        try:
            ids = sample_lm(
                self.model, prompt, n_chars, dec.temperature, dec.top_k, generator, NOT_TEXT
            )
        finally:
            self.model.train()
        return self.vocab.decode(ids)


def vocab_state(vocab) -> dict:
    """The vocabulary as weights_only-safe data, tagged so checkpoints know its kind."""
    return {"kind": "char_vocab", **vocab.state_dict()}


def _to_plain_state(state):
    if state is None or isinstance(state, Tensor):
        return None if state is None else state.detach().cpu()
    return [_to_plain_state(s) for s in state]


def _from_plain_state(state, device):
    if isinstance(state, Tensor):
        return state.to(device)
    return tuple(_from_plain_state(s, device) for s in state)
