"""The corpus registry: where each data set comes from and how it is split.

``load_raw(data_cfg)`` returns raw (uncleaned) lines per split. Remote files are fetched
through :func:`nmt.data.download.fetch` (verified by SHA-256, mirror-aware); ``data=local``
reads the user's files (``data.local.*``) in place; ``tatoeba_en_fr``'s validation and test
splits are cut out by ``data.held_out.*``.
"""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.config_checks import check_data_config
from nmt.data.cleaning import clean_text
from nmt.data.download import fetch, sha256_file
from nmt.data.readers import decode_lines, read_lines, read_parallel, read_tsv, split_tsv
from nmt.errors import ConfigError, DataError

MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{split}.{lang}.gz"
)
MULTI30K_MONO_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task2/raw/train.{i}.en.gz"
)
TATOEBA_URL = "https://www.manythings.org/anki/fra-eng.zip"
SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")

# SHA-256 of the published files (the 2017-09-29 Tatoeba export; newer exports differ).
SHA256 = {
    "multi30k/mono_train.1.en.gz": "a0e057f07a9733199c0d755d77f6d583dc6f40a3180734b1130a216e2fdf3a3b",
    "multi30k/mono_train.2.en.gz": "d79dd70a9eafb2d1fe40151621278c4ae69b3c148c5052a53d7c7a41bf3ba023",
    "multi30k/mono_train.3.en.gz": "86e16fdcc699bcb6bca0f87c3cf1051f7de5ee3674dd588cedc5200194282749",
    "multi30k/mono_train.4.en.gz": "3771b84e010ad6197806d2a1188cb07c12149e3e0d178dd5966dee5763733686",
    "multi30k/mono_train.5.en.gz": "73988689307fe836994eae59735dc840c15da9775455fa76e6ed22606a042a91",
    "multi30k/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "multi30k/test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "multi30k/test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "multi30k/test_2017_flickr.fr.gz": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
    "multi30k/test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
    "multi30k/test_2017_mscoco.fr.gz": "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
    "multi30k/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "multi30k/train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "multi30k/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "multi30k/val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "tatoeba/fra-eng.zip": "16c4f7d0df9e7c5e6c54cdb0447f3f4a18a55052ff5e2e0b27dd4a06c0e49d04",
    "tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}
PARALLEL = ("multi30k_en_fr", "tatoeba_en_fr", "local")
TEXT = ("tinyshakespeare",)


@dataclass
class RawCorpus:
    """Raw lines per split (``train`` first), plus optional monolingual text."""

    splits: dict[str, tuple[list[str], list[str]]]
    mono: list[str] = field(default_factory=list)
    mono_side: str = "src"  # the side whose language the monolingual text is in
    read_stats: Counter = field(default_factory=Counter)


@dataclass
class Located:
    """The files a corpus is read from, and a fingerprint of their content."""

    files: dict[str, Path]
    fingerprint: str


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return getattr(cfg, key, default) if not isinstance(cfg, dict) else cfg.get(key, default)


def _fetch(relpath: str, url: str, data_cfg: Any) -> Path:
    return fetch(
        relpath, url, SHA256[relpath], _get(data_cfg, "cache_dir"), _get(data_cfg, "mirror")
    )


def _check_langs(data_cfg: Any, name: str) -> tuple[str, str]:
    src, tgt = _get(data_cfg, "src_lang"), _get(data_cfg, "tgt_lang")
    if {src, tgt} != {"en", "fr"}:
        raise ConfigError(
            f"data={name} is English-French: set data.src_lang and data.tgt_lang to en and fr (got {src}, {tgt})"
        )
    return src, tgt


def locate(data_cfg: Any) -> Located:
    """Fetch/verify the corpus files and fingerprint them (no text is parsed)."""
    name = _get(data_cfg, "name")
    files: dict[str, Path] = {}
    if name == "multi30k_en_fr":
        for split in MULTI30K_SPLITS:
            for lang in _check_langs(data_cfg, name):
                rel = f"multi30k/{split}.{lang}.gz"
                files[rel] = _fetch(rel, MULTI30K_URL.format(split=split, lang=lang), data_cfg)
        if _get(data_cfg, "use_mono"):
            for i in range(1, 6):
                rel = f"multi30k/mono_train.{i}.en.gz"
                files[rel] = _fetch(rel, MULTI30K_MONO_URL.format(i=i), data_cfg)
    elif name == "tatoeba_en_fr":
        _check_langs(data_cfg, name)
        files["tatoeba/fra-eng.zip"] = _fetch("tatoeba/fra-eng.zip", TATOEBA_URL, data_cfg)
    elif name == "tinyshakespeare":
        files["tinyshakespeare/input.txt"] = _fetch(
            "tinyshakespeare/input.txt", SHAKESPEARE_URL, data_cfg
        )
    elif name == "local":
        files = _local_files(data_cfg)
    else:
        raise ConfigError(f"data.name={name!r} is unknown: use one of {', '.join(PARALLEL + TEXT)}")
    digest = hashlib.sha256(name.encode())
    for key, path in sorted(files.items()):
        sha = SHA256.get(key) if name != "local" else sha256_file(path)
        digest.update(f"{key}={sha};".encode())
    return Located(files, digest.hexdigest())


def _local_files(data_cfg: Any) -> dict[str, Path]:
    check_data_config(data_cfg)
    local, at = _get(data_cfg, "local"), "data.local."
    # Keyed by the names of data.local's keys (train_src ...): they also enter the
    # fingerprint, as they did when these keys were data.train_src ...
    files = {}
    for split in ("train", "valid", "test"):
        pair = (_get(local, f"{split}_src"), _get(local, f"{split}_tgt"))
        tsv = _get(local, f"{split}_tsv")
        if tsv:
            files[f"{split}_tsv"] = Path(tsv)
        elif all(pair):
            files[f"{split}_src"], files[f"{split}_tgt"] = Path(pair[0]), Path(pair[1])
        elif any(pair):
            raise ConfigError(
                f"data=local: set both {at}{split}_src and {at}{split}_tgt (only one is set)"
            )
        elif split != "test":
            raise ConfigError(
                f"data=local needs {at}{split}_src and {at}{split}_tgt (or {at}{split}_tsv): "
                "set them to your files"
            )
    for key, path in files.items():
        if path.is_dir():
            raise DataError(
                f"{at}{key} is {path}, a folder, not a file: set {at}{key} to the corpus "
                "file itself"
            )
        if not path.is_file():
            raise DataError(f"{at}{key} file {path} does not exist: check the path")
    return files


def load_raw(data_cfg: Any, located: Located | None = None) -> RawCorpus:
    """Raw lines of every split of a parallel corpus (see the module docstring)."""
    located = located or locate(data_cfg)
    name, files = _get(data_cfg, "name"), located.files
    mode = _get(data_cfg, "on_bad_utf8", "error")
    stats: Counter = Counter()
    src_lang, tgt_lang = _get(data_cfg, "src_lang"), _get(data_cfg, "tgt_lang")
    if name in TEXT:
        raise ConfigError(
            f"data={name} is a character language-model corpus: use prepare_text, not prepare"
        )
    splits: dict[str, tuple[list[str], list[str]]] = {}
    mono: list[str] = []
    if name == "multi30k_en_fr":
        for split in MULTI30K_SPLITS:
            src, tgt = (
                files[f"multi30k/{split}.{src_lang}.gz"],
                files[f"multi30k/{split}.{tgt_lang}.gz"],
            )
            splits[split] = read_parallel(src, tgt, mode, stats)
        for i in range(1, 6):
            if f"multi30k/mono_train.{i}.en.gz" in files:
                mono += read_lines(files[f"multi30k/mono_train.{i}.en.gz"], mode, stats)
    elif name == "tatoeba_en_fr":
        en, fr = read_tatoeba(files["tatoeba/fra-eng.zip"], mode, stats)
        held_out = _get(data_cfg, "held_out")
        parts = split_grouped(
            en,
            _get(held_out, "valid_size"),
            _get(held_out, "test_size"),
            _get(held_out, "seed"),
        )
        for split, idx in parts.items():
            pair = ([en[i] for i in idx], [fr[i] for i in idx])
            splits[split] = pair if src_lang == "en" else (pair[1], pair[0])
    else:  # local
        valid = _get(data_cfg, "valid_split", "val")
        for split, out in (("train", "train"), ("valid", valid), ("test", "test")):
            if f"{split}_tsv" in files:
                splits[out] = read_tsv(files[f"{split}_tsv"], mode, stats)
                key = f"{split}_tsv"
            elif f"{split}_src" in files:
                splits[out] = read_parallel(
                    files[f"{split}_src"], files[f"{split}_tgt"], mode, stats
                )
                key = f"{split}_src"
            else:
                continue
            if not splits[out][0]:
                raise DataError(
                    f"data.local.{key} file {files[key]} is empty: give it at least one sentence "
                    f"{'pair' if key.endswith('tsv') else '(and its translation)'}"
                )
    mono_side = "src" if src_lang == "en" else "tgt"
    return RawCorpus(splits, mono, mono_side, stats)


def read_tatoeba(
    path: Path, on_bad_utf8: str = "error", stats: Counter | None = None
) -> tuple[list[str], list[str]]:
    """English and French columns of ``fra.txt`` inside the Anki export zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            data = archive.read("fra.txt")
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(
            f"{path} is not the Tatoeba fra-eng.zip with fra.txt inside ({err}): download it again"
        ) from None
    name = f"{path}:fra.txt"
    return split_tsv(decode_lines(data, name, on_bad_utf8, stats), name)


def split_grouped(
    keys: list[str], valid_size: int, test_size: int, seed: int
) -> dict[str, list[int]]:
    """Deterministic train/val/test indices with all lines of one (cleaned) key on one side.

    Groups are visited in a seeded random order; a group goes to ``test`` while it fits in
    ``test_size`` pairs, else to ``val`` while it fits in ``valid_size``, else to ``train``.
    Each split keeps the file order.
    """
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(clean_text(key), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for group in order:
        if len(parts["test"]) + len(group) <= test_size:
            parts["test"] += group
        elif len(parts["val"]) + len(group) <= valid_size:
            parts["val"] += group
        else:
            parts["train"] += group
    return {split: sorted(idx) for split, idx in parts.items()}


def load_text(data_cfg: Any, located: Located | None = None) -> dict[str, str]:
    """tiny Shakespeare as text: the first 90% of characters ``train``, the rest ``val``."""
    located = located or locate(data_cfg)
    if _get(data_cfg, "name") not in TEXT:
        raise ConfigError(
            f"data={_get(data_cfg, 'name')} is a parallel corpus: use prepare, not prepare_text"
        )
    lines = read_lines(
        located.files["tinyshakespeare/input.txt"], _get(data_cfg, "on_bad_utf8", "error")
    )
    text = "\n".join(lines) + "\n"
    cut = int(len(text) * 0.9)
    return {"train": text[:cut], "val": text[cut:]}
