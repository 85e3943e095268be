"""``validate(cfg)``: every check of a config that needs no data, in one place.

The typed schema (:mod:`nmt.config`) already refuses, at composition, unknown keys, values
of the wrong type and names outside a key's choices (:mod:`nmt.config_choices`). What is
left is here: numbers out of range (``train.log_every=0``, ``decode.top_p=2``) and
combinations of keys that cannot work together (``model.input_feeding=true`` without
attention, ``model.share_embeddings`` without one joint vocabulary, ...). ``nmt-train`` runs
:func:`validate` before any data is read or any file is written.

The section checks are also used on their own: :func:`check_model` by ``build_model``,
:func:`check_embeddings` by ``apply_pretrained``, :func:`check_decode_config` by
``nmt-translate`` (whose options change a checkpoint's decode settings) and
:func:`check_data_config` when ``data=local`` files are located. Such sections may be plain
dataclasses made in code, which nothing validated: :func:`check_choices` checks their
choices too.

Every failure is a :class:`~nmt.errors.ConfigError`: one sentence naming the key(s) and
what to do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.config_choices import Choice
from nmt.data import vector_sets  # the registry is looked up when used (tests swap it)
from nmt.errors import ConfigError

# Target pieces per source piece in a checkpoint's lexical table (nmt.search.lexical_table):
# the largest decode.shortlist.
SHORTLIST_TABLE_K = 100
# The largest train.subword_nbest: sentencepiece's n-best search stops at 512.
SUBWORD_NBEST_MAX = 512


def validate(cfg: Any) -> None:
    """Refuse values and combinations that cannot work, before any data is read.

    Raises:
        ConfigError: naming the first bad key (or pair of keys) and what to do.
    """
    for section in ("data", "tokenizer", "train"):
        check_choices(getattr(cfg, section), section)
    check_train(cfg.train)
    check_decode_config(cfg.decode)
    check_data_config(cfg.data)
    check_model(cfg.model)
    char_lm = cfg.model.arch == "char_lm"
    sides = set() if char_lm else {"src", "tgt"}
    check_embeddings(cfg.embeddings, sides, not char_lm and bool(cfg.model.share_embeddings))
    check_subword_sampling(cfg)
    if cfg.model.share_embeddings and not char_lm:
        if not cfg.tokenizer.joint or cfg.tokenizer.restrict_vocab:
            raise ConfigError(
                "model.share_embeddings=true needs one joint vocabulary: set "
                "tokenizer.joint=true and tokenizer.restrict_vocab=false, or "
                "model.share_embeddings=false"
            )


def check_choices(section: Any, prefix: str) -> None:
    """Refuse a value outside its key's choices (keys whose default is a
    :class:`~nmt.config_choices.Choice`); a composed config can hold no such value, a
    dataclass made in code or changed with ``dataclasses.replace`` can."""
    kind = OmegaConf.get_type(section) if isinstance(section, DictConfig) else type(section)
    if kind is None or not dataclasses.is_dataclass(kind):
        return
    for f in dataclasses.fields(kind):
        if isinstance(f.default, Choice):
            value, allowed = getattr(section, f.name), type(f.default).values()
            if value not in allowed:
                raise ConfigError(
                    f"{prefix}.{f.name}={value!r} is unknown: use one of {', '.join(allowed)}"
                )


def check_train(t: Any) -> None:
    """``train.*``: counts and rates in range, and the keys that depend on each other."""

    def at_least(key: str, low: float) -> None:
        if getattr(t, key) < low:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be at least {low}")

    for key in ("log_every", "accum_steps", "valid_beam_size"):
        at_least(key, 1)
    for key in ("bptt_len", "batch_size"):
        if getattr(t.char_lm, key) < 1:
            raise ConfigError(f"train.char_lm.{key}={getattr(t.char_lm, key)} must be at least 1")
    for key in (
        "max_steps", "max_epochs", "max_minutes", "max_tokens", "max_sentences", "lr",
        "weight_decay", "momentum", "clip_norm", "warmup_steps", "plateau_patience", "min_lr",
        "valid_every", "valid_max_sentences", "patience", "keep_last", "threads", "log_seconds",
    ):  # fmt: skip
        at_least(key, 0)
    if t.max_tokens <= 0 and t.max_sentences <= 0:
        raise ConfigError("set train.max_tokens or train.max_sentences to a positive number")
    if not 0 <= t.label_smoothing < 1:
        raise ConfigError(f"train.label_smoothing={t.label_smoothing} must be in [0, 1)")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay={t.ema_decay} must be in [0, 1) (0 turns it off)")
    if not 0 < t.plateau_factor <= 1:
        raise ConfigError(f"train.plateau_factor={t.plateau_factor} must be in (0, 1]")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas={list(t.betas)} must be two numbers in [0, 1)")
    if t.decay_by_time and t.schedule != "cosine":
        raise ConfigError(
            f"train.decay_by_time=true needs train.schedule=cosine (it is {t.schedule})"
        )
    if not 0 <= t.subword_alpha <= 1:
        raise ConfigError(f"train.subword_alpha={t.subword_alpha} must be in [0, 1] (0 = off)")
    if t.subword_nbest != -1 and not 2 <= t.subword_nbest <= SUBWORD_NBEST_MAX:
        raise ConfigError(
            f"train.subword_nbest={t.subword_nbest} must be -1 (every segmentation) or "
            f"from 2 to {SUBWORD_NBEST_MAX} (the n best segmentations of each word)"
        )


def check_subword_sampling(cfg: Any) -> None:
    """``train.subword_alpha > 0`` samples unigram segmentations of translation pairs: refuse
    it where there is nothing to sample (the char LM, a bpe/char/word tokenizer)."""
    alpha = cfg.train.subword_alpha
    if alpha <= 0:
        return
    if cfg.model.arch == "char_lm":
        raise ConfigError(
            f"train.subword_alpha={alpha} samples subword segmentations, but "
            "model.arch=char_lm reads characters: set train.subword_alpha=0"
        )
    if cfg.tokenizer.model_type != "unigram":
        raise ConfigError(
            f"train.subword_alpha={alpha} samples from a unigram model's piece probabilities, "
            f"which tokenizer.model_type={cfg.tokenizer.model_type} does not have: use "
            "tokenizer.model_type=unigram or train.subword_alpha=0"
        )


def check_decode_config(dec: Any, prefix: str = "decode") -> None:
    """Refuse decoding options that cannot work (a beam of 0, top_p of 2, a nan penalty, ...)."""
    check_choices(dec, prefix)
    for key in ("beam_size", "n_best", "max_tokens", "workers", "batch_threads"):
        if getattr(dec, key) < 1:
            raise ConfigError(f"{prefix}.{key}={getattr(dec, key)} must be at least 1")
    if dec.workers > 1 and dec.batch_threads > 1:
        raise ConfigError(
            f"{prefix}.workers={dec.workers} and {prefix}.batch_threads={dec.batch_threads} "
            "both split the batches: set one of them to 1"
        )
    for key in (
        "min_len",
        "max_len_a",
        "max_len_b",
        "no_repeat_ngram_size",
        "top_k",
        "max_sentences",
        "shortlist",
        "shortlist_frequent",
    ):
        if getattr(dec, key) < 0:
            raise ConfigError(f"{prefix}.{key}={getattr(dec, key)} must not be negative")
    if dec.shortlist > SHORTLIST_TABLE_K:
        raise ConfigError(
            f"{prefix}.shortlist={dec.shortlist} must be at most {SHORTLIST_TABLE_K}, the "
            "candidates per source piece a checkpoint's lexical table holds"
        )
    if not 0 <= dec.temperature < float("inf"):  # nan and inf: a RuntimeError when sampling
        raise ConfigError(f"{prefix}.temperature={dec.temperature} must be a finite number >= 0")
    if not 0 <= dec.top_p <= 1:
        raise ConfigError(f"{prefix}.top_p={dec.top_p} must be in [0, 1]")
    # nan or inf would make every hypothesis score nan or -inf: nothing could be ranked.
    if not math.isfinite(dec.length_penalty):
        raise ConfigError(f"{prefix}.length_penalty={dec.length_penalty} must be a finite number")
    if not 0 <= dec.coverage_penalty < float("inf"):
        raise ConfigError(
            f"{prefix}.coverage_penalty={dec.coverage_penalty} must be a finite number >= 0"
        )


LOCAL_SPLITS = ("train", "valid", "test")


def check_data_config(data: Any) -> None:
    """Refuse ``data=local`` settings that name one split's files twice (a TSV and a
    source/target pair in ``data.local``), before any file is looked at (``data`` and its
    ``local`` may also be dicts)."""

    def get(node: Any, key: str) -> Any:
        return node.get(key) if isinstance(node, dict) else getattr(node, key, None)

    if get(data, "name") != "local":
        return
    local, at = get(data, "local"), "data.local."
    for split in LOCAL_SPLITS:
        pair = [f"{at}{split}_{side}" for side in ("src", "tgt") if get(local, f"{split}_{side}")]
        if get(local, f"{split}_tsv") and pair:
            raise ConfigError(
                f"{at}{split}_tsv and {' and '.join(pair)} are both set: give the {split} "
                f"pairs one way, either {at}{split}_tsv or {at}{split}_src and "
                f"{at}{split}_tgt (set the other to null)"
            )


def check_model(c: Any) -> None:
    """``model.*`` on its own: choices, sizes, and the keys that depend on each other (the
    checks that need the vocabulary sizes are ``nmt.models.builder.check_model_config``'s)."""
    check_choices(c, "model")
    for key in ("layers", "emb_dim", "hidden_dim"):
        if getattr(c, key) < 1:
            raise ConfigError(f"model.{key}={getattr(c, key)} must be at least 1")
    if not 0.0 <= c.dropout < 1.0:
        raise ConfigError(f"model.dropout={c.dropout} must be in [0, 1)")
    if c.init == "uniform" and not (c.init_scale > 0 and math.isfinite(c.init_scale)):
        raise ConfigError(f"model.init_scale={c.init_scale} must be a positive number")
    if c.input_feeding and c.attention == "none":
        raise ConfigError(
            "model.input_feeding=true feeds the previous attentional vector, which needs "
            "attention: set model.attention or model.input_feeding=false"
        )
    if c.arch == "char_lm":
        if c.attention != "none":
            raise ConfigError(
                "model.arch=char_lm has no source to attend to: set model.attention=none "
                "(or use model=char_lm)"
            )
        return
    if c.bidirectional and c.hidden_dim % 2:
        raise ConfigError(
            f"model.bidirectional=true splits model.hidden_dim={c.hidden_dim} between two "
            "directions: use an even model.hidden_dim"
        )


def check_embeddings(emb_cfg: Any, sides: set[str], shared: bool) -> None:
    """Refuse an embeddings config that cannot work with a model whose embedding tables are
    ``sides`` (``shared``: one table for both)."""
    for side in ("src", "tgt"):
        cfg = getattr(emb_cfg, side)
        check_choices(cfg, f"embeddings.{side}")
        if cfg.vectors and cfg.init not in ("random", "pretrained"):
            raise ConfigError(
                f"embeddings.{side}.vectors={cfg.vectors} and embeddings.{side}.init={cfg.init} "
                f"disagree: drop one (vectors=NAME means init=pretrained)"
            )
        if cfg.init == "pretrained" and not cfg.vectors:
            raise ConfigError(
                f"embeddings.{side}.init=pretrained needs embeddings.{side}.vectors=NAME "
                f"({' or '.join(vector_sets.VECTOR_SETS)})"
            )
        if (effective_init(cfg) != "random" or cfg.freeze) and side not in sides:
            raise ConfigError(
                f"embeddings.{side} asks for '{effective_init(cfg)}' but this model has no "
                f"{side} embedding: use embeddings=random"
            )
    if shared and _side_key(emb_cfg.src) != _side_key(emb_cfg.tgt):
        raise ConfigError(
            "model.share_embeddings=true uses one table for both sides, so embeddings.src and "
            "embeddings.tgt must be set the same way"
        )


def effective_init(side_cfg: Any) -> str:
    """A registry ``vectors`` name on a side left at ``init=random`` means ``pretrained``."""
    return "pretrained" if side_cfg.vectors and side_cfg.init == "random" else str(side_cfg.init)


def _side_key(c: Any) -> tuple:
    return (effective_init(c), c.vectors, c.path, str(c.format), c.freeze, str(c.subword))
