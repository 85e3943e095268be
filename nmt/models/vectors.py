"""Word vectors with gensim: read pretrained files, or train Word2Vec/FastText (cached).

Everything returns gensim ``KeyedVectors``; :func:`vector_for` looks a sentencepiece piece up
in them (see :mod:`nmt.models.embeddings` for the mapping rules).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import string
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nmt.config import WORD_START
from nmt.config_choices import VectorFormat
from nmt.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMATS = VectorFormat.values()  # the config's choices (nmt/config_choices.py)
PUNCTUATION = string.punctuation + "\u00ab\u00bb\u2019\u201c\u201d\u2026"  # ASCII + « » ’ “ ” …


@contextlib.contextmanager
def quiet_gensim():
    """gensim logs each load, epoch and save at INFO (most of a run's log): keep warnings."""
    logger = logging.getLogger("gensim")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@quiet_gensim()
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


def piece_forms(piece: str, lowercase: bool) -> list[str]:
    """Keys tried for a sentencepiece ``piece``: itself, the word without ``▁``, lowercased."""
    word = piece[1:] if piece.startswith(WORD_START) else piece
    forms = [piece, word] + ([word.lower()] if lowercase else [])
    return [f for f in dict.fromkeys(forms) if f]


def word_forms(token: str, lowercase: bool) -> list[str]:
    """Keys tried for a whitespace ``token`` of text: itself, without surrounding punctuation,
    the part after an apostrophe (French elision: ``l'homme`` -> ``homme``), lowercased."""
    core = token.strip(PUNCTUATION)
    forms = [token, core]
    if "'" in core or "\u2019" in core:
        forms.append(re.split("['\u2019]", core)[-1])
    if lowercase:
        forms += [f.lower() for f in forms]
    return [f for f in dict.fromkeys(forms) if f]


def lookup(kv: Any, forms: list[str]) -> np.ndarray | None:
    """The vector of the first of ``forms`` that ``kv`` has, or None."""
    for form in forms:
        if form in kv.key_to_index:
            return kv.get_vector(form)
    return None


def vector_for(kv: Any, piece: str, lowercase: bool) -> np.ndarray | None:
    """The vector of a sentencepiece ``piece``, or None when ``kv`` has none.

    Tried in order: the piece itself, the word without ``▁``, then (``lowercase``) the
    lowercased word. fastText n-gram vectors answer for any non-empty word.
    """
    vec = lookup(kv, piece_forms(piece, lowercase))
    word = piece[1:] if piece.startswith(WORD_START) else piece
    if vec is None and is_fasttext(kv) and word:
        return kv.get_vector(word)
    return vec


def candidate_words(pieces: Iterable[str], lines: Iterable[str], lowercase: bool) -> set[str]:
    """Every key :func:`vector_for` and :func:`subword_means` may ask for: the forms of the
    vocabulary's pieces and of the text's whitespace tokens (what a vector set is cut to)."""
    words: set[str] = set()
    for piece in pieces:
        words.update(piece_forms(piece, lowercase))
    for token in {t for line in lines for t in line.split()}:
        words.update(word_forms(token, lowercase))
    return words


def subword_means(
    kv: Any, tok: Any, lines: Iterable[str], skip: set[int], lowercase: bool
) -> dict[int, np.ndarray]:
    """Vectors for pieces that are no whole word: the mean of the vectors of the words they
    occur in (each whitespace token of ``lines`` segmented alone), weighted by frequency.

    Pieces in ``skip`` (covered directly, special) are left out.
    """
    counts = Counter(t for line in lines for t in line.split())
    piece_id = {tok.id_to_piece(i): i for i in range(tok.vocab_size)}
    sums: dict[int, np.ndarray] = {}
    weights: Counter[int] = Counter()
    for token, n in counts.items():
        vec = lookup(kv, word_forms(token, lowercase))
        if vec is None:
            continue
        for piece in set(tok.pieces(token)):
            i = piece_id.get(piece)
            if i is None or i in skip:
                continue
            sums[i] = sums[i] + n * vec if i in sums else n * np.asarray(vec, dtype=np.float64)
            weights[i] += n
    return {i: (total / weights[i]).astype(np.float32) for i, total in sums.items()}


@quiet_gensim()
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
        log.debug("%s vectors from cache %s", cfg.init, folder)
        return KeyedVectors.load(str(file))
    algo = FastText if cfg.init == "fasttext" else Word2Vec
    log.debug("training %s vectors (%d dims) on %d sentences", cfg.init, dim, len(sentences))
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
