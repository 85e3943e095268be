"""sentencepiece tokenizers: trained on training text only, cached, optionally restricted.

Ids are fixed (``nmt.config``): pad=0, unk=1, bos=2, eos=3. ``encode`` adds no BOS/EOS.
Text is cleaned with :func:`nmt.data.cleaning.clean_text` before encoding, and sentencepiece
uses the ``identity`` normalization, so ``decode(encode(x)) == clean_text(x)`` whenever
every character of ``x`` is in the vocabulary (typography such as U+202F is kept as is).

With ``restrict_vocab`` a side keeps only the pieces seen in its own training text (plus the
specials): its ids are a dense renumbering of those pieces and any other piece maps to unk.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.config_choices import PieceModel
from nmt.data.cleaning import clean_text
from nmt.errors import ConfigError, DataError
from nmt.outputs import write_atomic

MODEL_TYPES = PieceModel.values()  # the config's choices (nmt/config_choices.py)
N_SPECIAL = 4
FORMAT_VERSION = 1
SPM_SEED = 1234
# How many times sentencepiece actually trained in this process (tests check cache reuse).
TRAIN_COUNT = 0


class Tokenizer:
    """One language side's tokenizer (a sentencepiece model, optionally with remapped ids)."""

    def __init__(self, model_proto: bytes, kept: Sequence[int] | None = None) -> None:
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.kept = None if kept is None else [int(i) for i in kept]
        if self.kept is None:
            self._old = self._new = None
        else:
            # _old: our id -> sentencepiece id; _new: sentencepiece id -> our id (unk if unseen).
            self._old = np.array(list(range(N_SPECIAL)) + self.kept, dtype=np.int64)
            self._new = np.full(self.sp.get_piece_size(), UNK_ID, dtype=np.int64)
            self._new[self._old] = np.arange(len(self._old))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() if self._old is None else len(self._old)

    def __len__(self) -> int:
        return self.vocab_size

    def normalize(self, text: str) -> str:
        """The text exactly as the tokenizer sees it (what ``decode(encode(.))`` returns)."""
        return clean_text(text)

    def encode(self, text: str) -> list[int]:
        """Piece ids of one sentence (no BOS/EOS)."""
        ids = self.sp.encode(clean_text(text))
        return ids if self._new is None else self._new[ids].tolist()

    def encode_batch(self, lines: Sequence[str], cleaned: bool = False) -> list[list[int]]:
        """Piece ids of many sentences (``cleaned``: already passed through ``clean_text``)."""
        lines = list(lines) if cleaned else [clean_text(line) for line in lines]
        out = self.sp.encode(lines, num_threads=2)
        if self._new is None:
            return out
        return [self._new[ids].tolist() for ids in out]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of piece ids; pad/bos/eos are skipped, unk shows as `` ⁇ ``."""
        ids = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
        if self._old is not None:
            ids = self._old[ids].tolist()
        return self.sp.decode(ids)

    def pieces(self, text: str) -> list[str]:
        """Pieces of one sentence; with a restricted vocabulary unseen pieces are ``<unk>``."""
        return [self.id_to_piece(i) for i in self.encode(text)]

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i) if self._old is None else int(self._old[i]))

    def piece_to_id(self, piece: str) -> int:
        i = self.sp.piece_to_id(piece)
        return i if self._new is None else int(self._new[i])

    def vocab(self) -> list[str]:
        """Every piece, by id."""
        return [self.id_to_piece(i) for i in range(self.vocab_size)]

    def restricted(self, lines: Sequence[str]) -> Tokenizer:
        """A tokenizer over the same model keeping only the pieces seen in ``lines`` (cleaned)."""
        seen: set[int] = set()
        for ids in self.sp.encode(list(lines), num_threads=2):
            seen.update(ids)
        return Tokenizer(self.model_proto, sorted(i for i in seen if i >= N_SPECIAL))

    def state_dict(self) -> dict[str, Any]:
        """Plain data only: loads with ``torch.load(weights_only=True)``."""
        proto = torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8).clone()
        kept = None if self.kept is None else torch.tensor(self.kept, dtype=torch.long)
        return {
            "kind": "sentencepiece",
            "format_version": FORMAT_VERSION,
            "model_proto": proto,
            "kept": kept,
        }

    def __getstate__(self) -> dict[str, Any]:  # pickling (DataLoader workers, spawn)
        return {"model_proto": self.model_proto, "kept": self.kept}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_proto"], state["kept"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Tokenizer:
        proto = state["model_proto"]
        proto = bytes(proto.tolist()) if isinstance(proto, torch.Tensor) else bytes(proto)
        kept = state.get("kept")
        if isinstance(kept, torch.Tensor):
            kept = kept.tolist()
        return cls(proto, kept)


def _options(tok_cfg: Any) -> dict[str, Any]:
    model_type = tok_cfg.model_type
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"tokenizer.model_type={model_type!r} is unknown: use one of {', '.join(MODEL_TYPES)}"
        )
    if int(tok_cfg.vocab_size) <= N_SPECIAL:
        raise ConfigError(
            f"tokenizer.vocab_size={tok_cfg.vocab_size} is too small: use at least a few hundred"
        )
    opts = {
        "model_type": model_type,
        "vocab_size": int(tok_cfg.vocab_size),
        "character_coverage": float(tok_cfg.character_coverage),
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        # unigram/bpe: a vocab_size the text cannot fill is an error naming the maximum;
        # for char/word models vocab_size is an upper bound (conf/tokenizer/char.yaml).
        "hard_vocab_limit": model_type in ("unigram", "bpe"),
        "normalization_rule_name": "identity",
        "num_threads": 2,
        "minloglevel": 2,
    }
    if int(tok_cfg.input_sentence_size) > 0:
        opts.update(
            input_sentence_size=int(tok_cfg.input_sentence_size), shuffle_input_sentence=True
        )
    return opts


def train_model(lines: Sequence[str], tok_cfg: Any) -> bytes:
    """Train a sentencepiece model on ``lines`` (already cleaned); returns the model proto."""
    global TRAIN_COUNT
    opts = _options(tok_cfg)
    if not lines:
        raise DataError(
            "no training text is left to train the tokenizer on: check the training files"
        )
    writer = io.BytesIO()
    spm.set_random_generator_seed(SPM_SEED)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=writer, **opts)
    except RuntimeError as err:
        msg = str(err)
        if "smaller than required_chars" in msg:
            raise ConfigError(
                f"tokenizer.vocab_size={opts['vocab_size']} is smaller than the number of characters "
                f"in the training text ({msg.split('. ')[-2].strip()}): raise tokenizer.vocab_size or lower "
                "tokenizer.character_coverage"
            ) from None
        most = re.search(r"value <= (\d+)", msg)
        if most:
            raise ConfigError(
                f"tokenizer.vocab_size={opts['vocab_size']} is more than this training text "
                f"supports (at most {most.group(1)} {opts['model_type']} pieces): set "
                f"tokenizer.vocab_size={most.group(1)} or lower, or train on more text"
            ) from None
        raise ConfigError(
            f"sentencepiece cannot build a {opts['model_type']} vocabulary of {opts['vocab_size']} pieces "
            f"from this training text ({msg.splitlines()[0][-160:]}): lower tokenizer.vocab_size"
        ) from None
    TRAIN_COUNT += 1
    return writer.getvalue()


def cache_key(lines: Sequence[str], tok_cfg: Any) -> str:
    """Hash of the training text's content, the options and the sentencepiece version."""
    digest = hashlib.sha256(repr(sorted(_options(tok_cfg).items())).encode())
    digest.update(f"spm={spm.__version__};v={FORMAT_VERSION};n={len(lines)};".encode())
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def train_or_load(lines: Sequence[str], tok_cfg: Any, cache_dir: str | Path) -> Tokenizer:
    """The tokenizer for ``lines`` from ``<cache_dir>/tokenizers/`` or freshly trained."""
    path = (
        Path(cache_dir) / "tokenizers" / f"{tok_cfg.model_type}-{cache_key(lines, tok_cfg)}.model"
    )
    if path.is_file():
        try:
            return Tokenizer(path.read_bytes())
        except (RuntimeError, OSError):
            path.unlink(missing_ok=True)  # damaged cache entry: train again
    proto = train_model(lines, tok_cfg)
    write_atomic(path, proto)
    return Tokenizer(proto)


def build_tokenizers(
    src_lines: Sequence[str], tgt_lines: Sequence[str], tok_cfg: Any, cache_dir: str | Path
) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers from cleaned training text (joint or per language)."""
    if tok_cfg.joint:
        src_tok = tgt_tok = train_or_load(list(src_lines) + list(tgt_lines), tok_cfg, cache_dir)
    else:
        src_tok = train_or_load(src_lines, tok_cfg, cache_dir)
        tgt_tok = train_or_load(tgt_lines, tok_cfg, cache_dir)
    if tok_cfg.restrict_vocab:
        src_tok, tgt_tok = src_tok.restricted(src_lines), tgt_tok.restricted(tgt_lines)
    return src_tok, tgt_tok
