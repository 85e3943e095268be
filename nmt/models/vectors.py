"""Word vectors with gensim: read pretrained files, or train Word2Vec/FastText (cached).

Everything returns gensim ``KeyedVectors``; :func:`vector_for` looks a sentencepiece piece up
in them (see :mod:`nmt.models.embeddings` for the mapping rules).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nmt.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMATS = ("glove", "word2vec_text", "word2vec_bin", "fasttext_vec", "fasttext_bin")
WORD_START = "\u2581"  # sentencepiece's word-boundary mark "▁"


def load_vectors(path: str, fmt: str, key: str) -> Any:
    """Read a vectors file; ``key`` (e.g. ``embeddings.src``) names the config in errors.

    ``glove``: text without header; ``word2vec_text`` / ``fasttext_vec``: text with a
    ``count dim`` header; ``word2vec_bin``: word2vec's binary format; ``fasttext_bin``:
    Facebook's fastText ``.bin`` (keeps the n-grams, so any string gets a vector).
    """
    from gensim.models import KeyedVectors
    from gensim.models.fasttext import load_facebook_vectors

    if fmt not in FORMATS:
        raise ConfigError(f"{key}.format={fmt!r} is unknown: use one of {', '.join(FORMATS)}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}.path={path} does not exist: point it at a vectors file")
    try:
        if fmt == "fasttext_bin":
            return load_facebook_vectors(str(file))
        return KeyedVectors.load_word2vec_format(
            str(file),
            binary=fmt == "word2vec_bin",
            no_header=fmt == "glove",
            unicode_errors="replace",
        )
    except (ValueError, EOFError, OSError, UnicodeDecodeError, AssertionError, IndexError) as err:
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{file} cannot be read as {fmt} vectors ({first}): check {key}.format"
        ) from None


def is_fasttext(kv: Any) -> bool:
    """True for vectors that build a vector for any string from character n-grams."""
    from gensim.models.fasttext import FastTextKeyedVectors

    return isinstance(kv, FastTextKeyedVectors) and kv.bucket > 0


def vector_for(kv: Any, piece: str, lowercase: bool) -> np.ndarray | None:
    """The vector of a sentencepiece ``piece``, or None when ``kv`` has none.

    Tried in order: the piece itself, the word without ``▁``, then (``lowercase``) the
    lowercased word. fastText n-gram vectors answer for any non-empty word.
    """
    word = piece[1:] if piece.startswith(WORD_START) else piece
    candidates = [piece, word]
    if lowercase:
        candidates.append(word.lower())
    for cand in candidates:
        if cand and cand in kv.key_to_index:
            return kv.get_vector(cand)
    if is_fasttext(kv) and word:
        return kv.get_vector(word)
    return None


def train_vectors(sentences: list[list[str]], cfg: Any, dim: int, cache_dir: str) -> Any:
    """Train gensim Word2Vec (``cfg.init=word2vec``) or FastText (``fasttext``) on tokenized
    ``sentences``; cached under ``cache_dir/vectors/`` by a hash of the text and options.

    Deterministic for a fixed ``cfg.seed`` with ``cfg.workers=1`` (more workers race).
    """
    from gensim.models import FastText, KeyedVectors, Word2Vec

    if not any(sentences):
        raise ConfigError(
            f"embeddings init={cfg.init} needs training text, but the tokenized text is empty"
        )
    options = {
        "algo": cfg.init,
        "sg": int(cfg.sg),
        "vector_size": dim,
        "window": cfg.window,
        "min_count": cfg.min_count,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
    }
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for sent in sentences:
        digest.update("\x1f".join(sent).encode())
        digest.update(b"\n")
    folder = Path(cache_dir).expanduser() / "vectors" / f"{cfg.init}-{digest.hexdigest()[:20]}"
    file = folder / "vectors.kv"
    if file.is_file():
        log.info("%s vectors from cache %s", cfg.init, folder)
        return KeyedVectors.load(str(file))
    algo = FastText if cfg.init == "fasttext" else Word2Vec
    log.info("training %s vectors (%d dims) on %d sentences", cfg.init, dim, len(sentences))
    model = algo(
        sentences=sentences,
        vector_size=dim,
        window=cfg.window,
        min_count=cfg.min_count,
        sg=int(cfg.sg),
        epochs=cfg.epochs,
        seed=cfg.seed,
        workers=max(1, cfg.workers),
    )
    kv = model.wv
    # Write into a temporary folder and rename it: a crash never leaves a half cache entry.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        kv.save(str(tmp / "vectors.kv"))
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: keep theirs
    return kv
