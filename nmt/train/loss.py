"""Training objectives: label-smoothed cross-entropy on the non-padding target positions.

The objectives are small ``nn.Module`` wrappers around the model so that the whole
forward pass (features -> logits -> loss) goes through one ``forward`` call: that is what
``DistributedDataParallel`` and ``torch.compile`` wrap. The model itself knows nothing
about losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import PAD_ID


class Seq2SeqObjective(nn.Module):
    """Summed token loss of a :class:`~nmt.models.seq2seq.Seq2Seq` on one batch."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return ``(loss_sum, nll_sum)``, both summed over the non-pad target tokens.

        Args:
            src: ``(batch, src_len)`` source ids; ``src_lengths`` ``(batch,)``.
            tgt_in: ``(batch, tgt_len)`` BOS + y; ``tgt_out``: ``(batch, tgt_len)`` y + EOS.

        ``loss_sum`` is the label-smoothed objective (with gradient); ``nll_sum`` is the
        plain negative log-likelihood (no gradient), the honest number behind perplexity.
        """
        hidden, _ = self.model.features(src, src_lengths, tgt_in)  # (B, T, H)
        mask = tgt_out != PAD_ID
        # Project only real tokens: padding can be a third of a batch and the output layer
        # (hidden x vocab) is the most expensive matmul of the step.
        logits = self.model.logits(hidden[mask])  # (N, V)
        return token_cross_entropy(logits, tgt_out[mask], self.label_smoothing)


class LMObjective(nn.Module):
    """Summed next-character loss of a :class:`~nmt.models.char_lm.CharLM` on one chunk."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, inputs: Tensor, targets: Tensor, state=None):
        """``inputs``/``targets``: ``(batch, bptt_len)``; returns ``(loss_sum, nll_sum, state)``."""
        log_probs, state = self.model(inputs, state)  # (B, T, V)
        lp = log_probs.reshape(-1, log_probs.size(-1)).float()
        y = targets.reshape(-1)
        nll = F.nll_loss(lp, y, reduction="sum")
        if self.label_smoothing > 0:
            # The same mixture F.cross_entropy uses: (1-eps) * nll + eps * mean_v(-log p_v).
            smooth = -lp.mean(dim=-1).sum()
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth
        else:
            loss = nll
        return loss, nll.detach(), state


def token_cross_entropy(
    logits: Tensor, targets: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed (label-smoothed) cross-entropy and summed plain NLL of ``(N, V)`` logits.

    Label smoothing follows ``F.cross_entropy``: the target distribution is
    ``(1 - eps) * one_hot + eps / V``.
    """
    logits = logits.float()  # the softmax in fp32 even under autocast
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction="sum")
    if label_smoothing > 0:
        with torch.no_grad():
            nll = F.cross_entropy(logits, targets, reduction="sum")
    else:
        nll = loss.detach()
    return loss, nll
