"""``build_model``: the one factory that turns ``cfg.model`` into a network.

It checks the option combinations first (a ConfigError names the key to change), builds the
network, initialises it and logs its parameter count.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from nmt.config import PAD_ID
from nmt.config_checks import check_model
from nmt.errors import ConfigError
from nmt.models.char_lm import CharLM
from nmt.models.embeddings import Embeddings
from nmt.models.seq2seq import Seq2Seq

log = logging.getLogger(__name__)


def build_model(model_cfg: Any, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq | CharLM:
    """A :class:`Seq2Seq` (``model.arch=seq2seq``) or :class:`CharLM` (``char_lm``; its
    vocabulary is ``tgt_vocab_size``; ``bidirectional``, ``bridge`` and ``share_embeddings``
    do not apply to it and are ignored).

    Raises:
        ConfigError: an unknown option or an impossible combination.
    """
    check_model_config(model_cfg, src_vocab_size, tgt_vocab_size)
    c = model_cfg
    cell = str(c.cell)  # the choices as plain strings: the modules keep no config Enums
    if c.arch == "char_lm":
        model: nn.Module = CharLM(
            tgt_vocab_size, cell, c.layers, c.emb_dim, c.hidden_dim, c.dropout, c.tie_embeddings
        )
    else:
        model = Seq2Seq(
            src_vocab_size,
            tgt_vocab_size,
            cell=cell,
            attention=str(c.attention),
            input_feeding=c.input_feeding,
            attentional_vector=str(c.attentional_vector),
            layers=c.layers,
            bidirectional=c.bidirectional,
            emb_dim=c.emb_dim,
            hidden_dim=c.hidden_dim,
            dropout=c.dropout,
            bridge=str(c.bridge),
            tie_embeddings=c.tie_embeddings,
            share_embeddings=c.share_embeddings,
        )
    init_weights(model, str(c.init), c.init_scale)
    n = count_parameters(model)
    log.debug("model: %s %s, %s parameters (%.1f M)", c.arch, c.cell, f"{n:,}", n / 1e6)
    return model


def check_model_config(c: Any, src_vocab_size: int, tgt_vocab_size: int) -> None:
    """Raise ConfigError for unknown values and combinations that cannot be built: the
    checks of ``model.*`` alone (:func:`nmt.config_checks.check_model`), then those that
    need the vocabulary sizes."""
    check_model(c)
    if c.arch == "char_lm":
        if tgt_vocab_size < 1:
            raise ConfigError(f"the character vocabulary is empty ({tgt_vocab_size} symbols)")
        return
    for side, size in (("source", src_vocab_size), ("target", tgt_vocab_size)):
        if size <= PAD_ID + 4:
            raise ConfigError(f"the {side} vocabulary has only {size} entries: check the tokenizer")
    if c.share_embeddings and src_vocab_size != tgt_vocab_size:
        raise ConfigError(
            f"model.share_embeddings=true needs one joint vocabulary, but the source has "
            f"{src_vocab_size} entries and the target {tgt_vocab_size}: set tokenizer.joint=true "
            "(without tokenizer.restrict_vocab) or model.share_embeddings=false"
        )


def init_weights(model: nn.Module, kind: str, scale: float) -> None:
    """``uniform``: every parameter from U(-scale, scale) (OpenNMT's default, fast to train);
    ``xavier``: Glorot-uniform matrices, zero biases. Padding rows stay zero."""
    for p in model.parameters():
        if kind == "uniform":
            nn.init.uniform_(p, -scale, scale)
        elif p.dim() >= 2:
            nn.init.xavier_uniform_(p)
        else:
            nn.init.zeros_(p)
    for module in model.modules():
        if isinstance(module, Embeddings):
            module.table.weight.data[PAD_ID].zero_()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (a tied or shared matrix counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
