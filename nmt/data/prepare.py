"""Numericalize once: read -> clean -> tokenize -> encode, cached on disk.

``prepare(cfg)`` is what training, evaluation and ``nmt-prepare`` call. The encoded splits
are cached under ``<cache_dir>/prepared/`` keyed by a hash of the corpus files' content,
the cleaning options and the tokenizer options, so a second call only loads tensors.
The tokenizer has its own cache (keyed by its training text), so changing a cleaning
option re-encodes but does not retrain sentencepiece unless the training text changed.

``train_text`` (for word2vec/fastText) holds *text*, not pieces: ``"src"`` and ``"tgt"`` are
the cleaned training sentences of the kept pairs (``clean_text``; tokenize them with
``tok.pieces``); with ``data.use_mono`` the cleaned monolingual lines are under
``"src_mono"`` (or ``"tgt_mono"`` when English is the target language).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from omegaconf import DictConfig, OmegaConf

from nmt.config import UNK_ID
from nmt.config_choices import plain
from nmt.data import datasets
from nmt.data.charvocab import CharVocab
from nmt.data.cleaning import clean_pairs, clean_text, length_filter, normalize
from nmt.data.tokenizer import Tokenizer, build_tokenizers
from nmt.errors import ConfigError, DataError
from nmt.outputs import write_atomic

CACHE_VERSION = 3
# Options that change the prepared data (mirror, cache_dir and test_splits do not; the
# files of data.local enter by content, through the fingerprint): the name each has in the
# cache key -> its key under ``data``. The data.held_out keys keep the names they had before
# they were grouped (split_seed, valid_size, test_size), so the caches prepared before stay
# valid: the same values give the same key.
DATA_KEYS = {
    "name": "name",
    "src_lang": "src_lang",
    "tgt_lang": "tgt_lang",
    "max_len": "max_len",
    "max_len_ratio": "max_len_ratio",
    "on_bad_utf8": "on_bad_utf8",
    "train_limit": "train_limit",
    "use_mono": "use_mono",
    "valid_split": "valid_split",
    "split_seed": "held_out.seed",
    "valid_size": "held_out.valid_size",
    "test_size": "held_out.test_size",
}
TOKENIZER_KEYS = (
    "model_type",
    "vocab_size",
    "joint",
    "character_coverage",
    "input_sentence_size",
    "restrict_vocab",
)


@dataclass
class EncodedSplit:
    """One split as id tensors (no BOS/EOS); evaluation splits keep their raw text too."""

    name: str
    src: list[torch.Tensor]
    tgt: list[torch.Tensor]
    src_text: list[str] | None = None  # NFC + strip, same order as the file
    tgt_text: list[str] | None = None

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class PreparedData:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    splits: dict[str, EncodedSplit]
    train_text: dict[str, list[str]]
    stats: dict[str, Any] = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False

    def summary(self) -> str:
        """A table: pairs read/kept/dropped per split, lengths, vocabularies, unk rate."""
        st = self.stats
        lines = [
            f"data {st['name']} ({st['src_lang']} -> {st['tgt_lang']}); prepared cache "
            f"{'reused' if self.from_cache else 'written'}: {self.cache_path}",
            f"{'split':<18}{'read':>8}{'kept':>8}{'dropped':>9}  {'src pieces mean/max':>20}  "
            f"{'tgt pieces mean/max':>20}  drops by reason",
        ]
        for name, split in self.splits.items():
            s = st["splits"][name]
            reasons = " ".join(f"{k}={v}" for k, v in sorted(s["drops"].items())) or "-"
            lines.append(
                f"{name:<18}{s['read']:>8}{len(split):>8}{s['read'] - len(split):>9}  "
                f"{_len_stats(split.src):>20}  {_len_stats(split.tgt):>20}  {reasons}"
            )
        tok = st["tokenizer"]
        lines.append(
            f"vocab: src {self.src_tok.vocab_size}, tgt {self.tgt_tok.vocab_size} "
            f"({'joint' if tok['joint'] else 'separate'} {tok['model_type']}, vocab_size={tok['vocab_size']}, "
            f"restrict_vocab={tok['restrict_vocab']})"
        )
        valid = st.get("valid_split")
        if valid in self.splits:
            v = self.splits[valid]
            lines.append(
                f"unknown pieces on {valid}: src {_unk_rate(v.src):.3%}, tgt {_unk_rate(v.tgt):.3%}"
            )
        if st.get("bad_utf8_lines"):
            lines.append(f"lines with invalid UTF-8 replaced: {st['bad_utf8_lines']}")
        text = ", ".join(f"{side} {len(v)}" for side, v in self.train_text.items())
        lines.append(f"train_text (cleaned lines, for word vectors): {text}")
        return "\n".join(lines)


def _len_stats(seqs: list[torch.Tensor]) -> str:
    if not seqs:
        return "-"
    lens = [len(x) for x in seqs]
    return f"{sum(lens) / len(lens):.1f} / {max(lens)}"


def _unk_rate(seqs: list[torch.Tensor]) -> float:
    total = sum(len(x) for x in seqs)
    return sum(int((x == UNK_ID).sum()) for x in seqs) / max(total, 1)


def _select(node: Any, key: str) -> Any:
    """``node``'s value at the dotted ``key`` (attribute access: a DictConfig or dataclass)."""
    for part in key.split("."):
        node = getattr(node, part)
    return node


def cache_key(cfg: Any, fingerprint: str) -> str:
    """Hash of the corpus content, the data options and the tokenizer options."""
    opts = {f"data.{name}": _select(cfg.data, key) for name, key in DATA_KEYS.items()}
    opts.update({f"tokenizer.{k}": getattr(cfg.tokenizer, k) for k in TOKENIZER_KEYS})
    text = f"v={CACHE_VERSION};spm={spm.__version__};files={fingerprint};{sorted(opts.items())!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _typed(cfg: Any) -> DictConfig:
    """A plain ``Config`` dataclass becomes a DictConfig so ``${oc.env:...}`` defaults resolve."""
    return cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)


def prepare(cfg: Any) -> PreparedData:
    """Encoded splits, tokenizers and word-vector training text (see the module docstring)."""
    cfg = _typed(cfg)
    cache_dir = Path(cfg.data.cache_dir)
    located = datasets.locate(cfg.data)
    path = cache_dir / "prepared" / f"{cfg.data.name}-{cache_key(cfg, located.fingerprint)}.pt"
    data = None
    if path.is_file():
        try:
            data = _load(path)
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    if data is None:
        data = _build(cfg, located, cache_dir)
        _save(data, path)
        data.cache_path = path
    if cfg.data.valid_split not in data.splits:
        raise ConfigError(
            f"data.valid_split={cfg.data.valid_split} is not a split of data={cfg.data.name}: "
            f"use one of {', '.join(s for s in data.splits if s != 'train')}"
        )
    return data


def _build(cfg: Any, located: datasets.Located, cache_dir: Path) -> PreparedData:
    d = cfg.data
    raw = datasets.load_raw(d, located)
    read_src, read_tgt = raw.splits["train"]
    drops: Counter = Counter()
    src, tgt = clean_pairs(read_src, read_tgt, drops)
    if not src:
        _nothing_left(d, located, len(read_src), drops, "cleaning")
    if d.train_limit is not None and len(src) > d.train_limit:
        # The limit comes before the tokenizer so it never sees text outside the N pairs.
        drops["train_limit"] += len(src) - d.train_limit
        src, tgt = src[: d.train_limit], tgt[: d.train_limit]
    src_tok, tgt_tok = build_tokenizers(src, tgt, cfg.tokenizer, cache_dir)
    src_ids, tgt_ids = (
        src_tok.encode_batch(src, cleaned=True),
        tgt_tok.encode_batch(tgt, cleaned=True),
    )
    keep = length_filter(
        [len(x) for x in src_ids], [len(y) for y in tgt_ids], d.max_len, d.max_len_ratio, drops
    )
    if not keep:
        _nothing_left(d, located, len(read_src), drops, "the length filter")
    stats: dict[str, Any] = {
        "name": d.name,
        "src_lang": d.src_lang,
        "tgt_lang": d.tgt_lang,
        "valid_split": d.valid_split,
        # Plain values (choices as strings: an Enum would not load with weights_only=True).
        "tokenizer": {k: plain(getattr(cfg.tokenizer, k)) for k in TOKENIZER_KEYS},
        "bad_utf8_lines": raw.read_stats.get("bad_utf8_lines", 0),
        "splits": {},
    }
    splits = {
        "train": EncodedSplit(
            "train", _tensors([src_ids[i] for i in keep]), _tensors([tgt_ids[i] for i in keep])
        )
    }
    stats["splits"]["train"] = {"read": len(read_src), "drops": dict(drops)}
    for name, (s, t) in raw.splits.items():
        if name == "train":
            continue
        s, t = [normalize(x) for x in s], [normalize(x) for x in t]
        splits[name] = EncodedSplit(
            name, _tensors(src_tok.encode_batch(s)), _tensors(tgt_tok.encode_batch(t)), s, t
        )
        stats["splits"][name] = {"read": len(s), "drops": {}}
    train_text = {"src": [src[i] for i in keep], "tgt": [tgt[i] for i in keep]}
    mono = [x for x in (clean_text(line) for line in raw.mono) if x]
    if mono:
        train_text[f"{raw.mono_side}_mono"] = mono
    stats["mono_lines"] = len(mono)
    return PreparedData(src_tok, tgt_tok, splits, train_text, stats)


def _nothing_left(d: Any, located: datasets.Located, n_read: int, drops: Counter, stage: str):
    """Raise: every training pair was dropped (the files are named, the drops counted)."""
    files = ", ".join(str(p) for key, p in located.files.items() if "train" in key)
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(drops.items()))
    raise DataError(
        f"no training pair of data={d.name} ({files}) is left after {stage}: {n_read} read, "
        f"dropped {reasons}; check the files or relax data.max_len / data.max_len_ratio"
    )


def _tensors(ids: list[list[int]]) -> list[torch.Tensor]:
    lens = [len(x) for x in ids]
    flat = torch.tensor(list(itertools.chain.from_iterable(ids)), dtype=torch.long)
    return list(torch.split(flat, lens))


def _flat(seqs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    lens = torch.tensor([len(x) for x in seqs], dtype=torch.int64)
    flat = torch.cat(seqs) if seqs else torch.zeros(0, dtype=torch.long)
    return {"flat": flat.to(torch.int32), "lens": lens}


def _unflat(d: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.split(d["flat"].long(), d["lens"].tolist()))


def _pack(lines: list[str] | None) -> dict[str, Any] | None:
    """Lines as one string: unpickling one string is far faster than a list of many."""
    return None if lines is None else {"n": len(lines), "text": "\n".join(lines)}


def _unpack(packed: dict[str, Any] | None) -> list[str] | None:
    if packed is None:
        return None
    return packed["text"].split("\n") if packed["n"] else []


def _save(data: PreparedData, path: Path) -> None:
    payload = {
        "version": CACHE_VERSION,
        "src_tok": data.src_tok.state_dict(),
        "tgt_tok": data.tgt_tok.state_dict(),
        "splits": {
            name: {
                "src": _flat(s.src),
                "tgt": _flat(s.tgt),
                "src_text": _pack(s.src_text),
                "tgt_text": _pack(s.tgt_text),
            }
            for name, s in data.splits.items()
        },
        "train_text": {side: _pack(lines) for side, lines in data.train_text.items()},
        "stats": data.stats,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue())


def _load(path: Path) -> PreparedData:
    p = torch.load(path, weights_only=True)
    if p.get("version") != CACHE_VERSION:
        raise ValueError("old cache format")
    splits = {
        name: EncodedSplit(
            name,
            _unflat(s["src"]),
            _unflat(s["tgt"]),
            _unpack(s["src_text"]),
            _unpack(s["tgt_text"]),
        )
        for name, s in p["splits"].items()
    }
    src_tok = Tokenizer.from_state_dict(p["src_tok"])
    tgt_tok = (
        src_tok
        if p["tgt_tok"]["model_proto"].equal(p["src_tok"]["model_proto"]) and _same_kept(p)
        else Tokenizer.from_state_dict(p["tgt_tok"])
    )
    train_text = {side: _unpack(text) for side, text in p["train_text"].items()}
    return PreparedData(src_tok, tgt_tok, splits, train_text, p["stats"], path, True)


def _same_kept(p: dict[str, Any]) -> bool:
    a, b = p["src_tok"]["kept"], p["tgt_tok"]["kept"]
    return (a is None and b is None) or (a is not None and b is not None and a.equal(b))


@dataclass
class PreparedText:
    """A character corpus: vocabulary and 1-D id tensors."""

    vocab: CharVocab
    train: torch.Tensor  # (n_train_chars,)
    val: torch.Tensor  # (n_val_chars,)
    name: str = "tinyshakespeare"

    def state_dict(self) -> dict[str, Any]:
        return self.vocab.state_dict()

    def summary(self) -> str:
        unk = int((self.val == UNK_ID).sum())
        return "\n".join(
            [
                f"data {self.name} (characters)",
                f"{'split':<8}{'chars':>10}",
                f"{'train':<8}{len(self.train):>10}",
                f"{'val':<8}{len(self.val):>10}",
                f"vocab: {self.vocab.size} (incl. <pad>, <unk>); unknown characters on val: {unk / max(len(self.val), 1):.3%}",
            ]
        )


def prepare_text(cfg: Any) -> PreparedText:
    """tiny Shakespeare: character vocabulary from the training text, train/val id tensors."""
    cfg = _typed(cfg)
    text = datasets.load_text(cfg.data)
    vocab = CharVocab.build(text["train"])
    return PreparedText(
        vocab, vocab.encode(text["train"]), vocab.encode(text["val"]), cfg.data.name
    )
