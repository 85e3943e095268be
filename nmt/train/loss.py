"""Training objectives: label-smoothed cross-entropy on the non-padding target positions.

The objectives are small ``nn.Module`` wrappers around the model so that the whole
forward pass (features -> logits -> loss) goes through one ``forward`` call: that is what
``DistributedDataParallel`` and ``torch.compile`` wrap. The model itself knows nothing
about losses.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import PAD_ID
from nmt.ops import linear_cross_entropy


class Seq2SeqObjective(nn.Module):
    """Summed token loss of a :class:`~nmt.models.seq2seq.Seq2Seq` on one batch."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(loss_sum, nll_sum)``, both summed over the non-pad target tokens.

        Args:
            src: ``(batch, src_len)`` source ids; ``src_lengths`` ``(batch,)``.
            tgt_in: ``(batch, tgt_len)`` BOS + y; ``tgt_out``: ``(batch, tgt_len)`` y + EOS.
            keep: ``(N,)`` positions of the non-pad tokens in ``tgt_out.view(-1)``, when the
                caller counted them on the host (a boolean mask on a GPU makes the host wait
                for the device to learn N); None: found here from ``tgt_out``.

        ``loss_sum`` is the label-smoothed objective (with gradient); ``nll_sum`` is the
        plain negative log-likelihood (no gradient), the honest number behind perplexity.
        """
        hidden, _ = self.model.features(src, src_lengths, tgt_in)  # (B, T, H)
        # Only real tokens reach the output layer: padding can be a third of a batch and
        # the output layer (hidden x vocab) is the most expensive part of the step.
        if keep is None:
            mask = tgt_out != PAD_ID
            real, targets = hidden[mask], tgt_out[mask]
        else:  # the same rows in the same order
            real = hidden.flatten(0, 1).index_select(0, keep)
            targets = tgt_out.reshape(-1).index_select(0, keep)
        x, weight, bias = self.model.output_projection(real)  # (N, H'), (V, H')
        return linear_cross_entropy(x, weight, bias, targets, self.label_smoothing)


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
