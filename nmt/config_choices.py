"""The closed choices of the config: one Enum per key that takes one of a few names.

A key typed with one of these Enums (in :mod:`nmt.config`) is validated by OmegaConf when
the config is composed: ``model.cell=grux`` fails at start, naming the key and the choices.
(OmegaConf does not support ``typing.Literal``; ``enum.StrEnum`` needs Python 3.11.)

A member *is* its name as a string: ``cfg.model.cell == "gru"``, f-strings, ``repr`` in
messages and cache keys, ``json.dumps`` and dict lookups all see the plain name (``"gru"``),
so code that compares or formats these values works with members and plain strings alike.
Checkpoints and JSON files hold plain strings (:func:`nmt.config.to_plain`), which
:func:`nmt.config.from_plain` turns back into members.

Each member's Python name equals its value: OmegaConf converts a string by *name*, writes
a member back as its *name*, and an Enum hashes its name (``{"gru": 3}[Cell.gru]`` works).
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Choice(str, Enum):
    """Base of the config's choices: a ``str`` whose text is the value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        # As the plain string: messages say model.cell='gru', and cache keys built with
        # repr() stay those of the plain strings that configs held before these Enums.
        return repr(str(self.value))

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The choices as plain strings, in order."""
        return tuple(str(m.value) for m in cls)


def plain(value: Any) -> Any:
    """``value``, or its plain string when it is a choice: for payloads that
    ``torch.load(weights_only=True)`` must read back (it refuses Enum members)."""
    return str(value.value) if isinstance(value, Choice) else value


# --- model ---------------------------------------------------------------------------
class Arch(Choice):
    seq2seq = "seq2seq"
    char_lm = "char_lm"


class Cell(Choice):
    rnn = "rnn"
    gru = "gru"
    lstm = "lstm"


class AttentionKind(Choice):
    none = "none"
    bahdanau = "bahdanau"
    luong_dot = "luong_dot"
    luong_general = "luong_general"
    luong_concat = "luong_concat"


class AttentionalVector(Choice):
    tanh = "tanh"
    linear = "linear"


class Bridge(Choice):
    none = "none"
    linear = "linear"


class WeightInit(Choice):
    uniform = "uniform"
    xavier = "xavier"


# --- embeddings ------------------------------------------------------------------------
class EmbeddingInit(Choice):
    random = "random"
    pretrained = "pretrained"
    file = "file"
    word2vec = "word2vec"
    fasttext = "fasttext"


class VectorFormat(Choice):
    glove = "glove"
    word2vec_text = "word2vec_text"
    word2vec_bin = "word2vec_bin"
    fasttext_vec = "fasttext_vec"
    fasttext_bin = "fasttext_bin"


class Subword(Choice):
    none = "none"
    mean = "mean"


# --- data and tokenizer ----------------------------------------------------------------
class BadUtf8(Choice):
    error = "error"
    replace = "replace"


class PieceModel(Choice):
    unigram = "unigram"
    bpe = "bpe"
    char = "char"
    word = "word"


# --- training --------------------------------------------------------------------------
class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(Choice):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Optimizer(Choice):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Schedule(Choice):
    constant = "constant"
    inverse_sqrt = "inverse_sqrt"
    plateau = "plateau"
    cosine = "cosine"


class ValidMetric(Choice):
    bleu = "bleu"
    chrf = "chrf"
    loss = "loss"


# --- decoding --------------------------------------------------------------------------
class DecodeMethod(Choice):
    beam = "beam"
    greedy = "greedy"
    sample = "sample"
