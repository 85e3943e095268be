"""Pretrained embeddings: every file format, the piece mapping, coverage figures, projection,
freezing, and gensim Word2Vec/FastText training (deterministic, sensible, cached)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import PAD_ID, EmbeddingsConfig, EmbeddingSideConfig, ModelConfig
from nmt.errors import ConfigError, DataError
from nmt.models.builder import build_model
from nmt.models.embeddings import apply_pretrained
from nmt.models.vectors import train_vectors

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
PIECES = ["▁the", "▁cat", "▁Dog", "s", "▁car", "▁zebra", "ing"]
# How the mock tokenizer splits the words of the training text.
SPLITS = {"cats": ["▁cat", "s"], "running": ["<unk>", "ing"]}
WORDS = {"the": [0.1, 0.2, 0.3, 0.4], "cat": [1.0, -1.0, 0.5, 0.25]}
WORDS |= {"dog": [-0.5, 0.5, 2.0, 1.5], "car": [3.0, 0.0, -2.0, 0.125], "truck": [1, 1, 1, 1]}
TRAIN = {"src": ["the cat cats Dog zebra car"], "tgt": ["the car"]}


class MockTokenizer:
    """The three things apply_pretrained needs: vocab_size, id_to_piece, pieces."""

    def __init__(self, pieces: list[str] = PIECES) -> None:
        self.vocab = SPECIALS + pieces

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id_to_piece(self, i: int) -> str:
        return self.vocab[i]

    def pieces(self, text: str) -> list[str]:
        out: list[str] = []
        for w in text.split():
            out += SPLITS.get(w, ["▁" + w if "▁" + w in self.vocab else "<unk>"])
        return out


TOK = MockTokenizer()
V = TOK.vocab_size


def make_model(emb_dim: int = 4, **overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=emb_dim, hidden_dim=8, dropout=0.0, **overrides)
    return build_model(OmegaConf.structured(cfg), V, V)


# Exact rows: these tests turn rescaling and sub-word means off unless they test them.
PLAIN = {"rescale": False, "subword": "none"}


def emb_config(src: dict | None = None, tgt: dict | None = None):
    return OmegaConf.structured(
        EmbeddingsConfig(
            src=EmbeddingSideConfig(**{**PLAIN, **(src or {})}),
            tgt=EmbeddingSideConfig(**{**PLAIN, **(tgt or {})}),
        )
    )


def write_vectors(tmp_path, fmt: str):
    from gensim.models import KeyedVectors

    path = tmp_path / f"vectors.{fmt}"
    if fmt == "glove":
        lines = [w + " " + " ".join(repr(x) for x in v) for w, v in WORDS.items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(list(WORDS), np.array(list(WORDS.values()), dtype=np.float32))
    kv.save_word2vec_format(str(path), binary=fmt == "word2vec_bin")
    return path


def table(model, side: str) -> torch.Tensor:
    return model.embedding_layers()[side].table.weight.detach()


@pytest.mark.parametrize("fmt", ["glove", "word2vec_text", "word2vec_bin", "fasttext_vec"])
def test_file_formats_map_pieces_and_report_coverage(tmp_path, fmt):
    path = write_vectors(tmp_path, fmt)
    model = make_model()
    before = table(model, "src").clone()
    report = apply_pretrained(
        model,
        emb_config(src=dict(init="file", path=str(path), format=fmt)),
        TOK,
        TOK,
        TRAIN,
        str(tmp_path),
    )
    w = table(model, "src")
    for piece, word in [("▁the", "the"), ("▁cat", "cat"), ("▁Dog", "dog"), ("▁car", "car")]:
        assert torch.equal(w[TOK.vocab.index(piece)], torch.tensor(WORDS[word]))
    assert torch.all(w[PAD_ID] == 0)
    # Uncovered pieces get fresh random rows, not zeros and not the old init.
    zebra = TOK.vocab.index("▁zebra")
    assert w[zebra].abs().sum() > 0 and not torch.equal(w[zebra], before[zebra])
    # 4 of 7 non-special types; tokens: the cat cat s Dog zebra car -> 5 of 7.
    assert report["src"]["types"] == pytest.approx(4 / 7)
    assert report["src"]["tokens"] == pytest.approx(5 / 7)
    assert report["src"]["dim"] == 4 and not report["src"]["projected"]
    assert report["tgt"] == {"init": "random", "frozen": False}
    assert torch.equal(table(model, "tgt"), table(make_model(), "tgt"))  # untouched


def test_lowercase_fallback_can_be_turned_off(tmp_path):
    path = write_vectors(tmp_path, "glove")
    model = make_model()
    side = dict(init="file", path=str(path), format="glove", lowercase_fallback=False)
    report = apply_pretrained(model, emb_config(src=side), TOK, TOK, TRAIN, str(tmp_path))
    assert report["src"]["types"] == pytest.approx(3 / 7)
    assert report["src"]["tokens"] == pytest.approx(4 / 7)


def test_fasttext_bin_gives_every_piece_a_vector(tmp_path):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    sentences = [["the", "cat", "sat"], ["the", "dog", "ran"], ["a", "car", "drove"]] * 5
    ft = FastText(sentences, vector_size=4, min_count=1, epochs=1, seed=1, workers=1, bucket=1000)
    path = tmp_path / "vectors.bin"
    save_facebook_model(ft, str(path))
    model = make_model()
    side = dict(init="file", path=str(path), format="fasttext_bin")
    report = apply_pretrained(model, emb_config(src=side), TOK, TOK, TRAIN, str(tmp_path))
    assert report["src"]["types"] == 1.0 and report["src"]["tokens"] == 1.0
    w = table(model, "src")
    torch.testing.assert_close(w[TOK.vocab.index("▁cat")], torch.tensor(np.array(ft.wv["cat"])))


def test_projection_when_dimensions_differ(tmp_path):
    path = write_vectors(tmp_path, "glove")
    side = dict(init="file", path=str(path), format="glove", project=True)
    model = make_model(emb_dim=6)
    report = apply_pretrained(model, emb_config(src=side), TOK, TOK, TRAIN, str(tmp_path))
    layer = model.embedding_layers()["src"]
    assert report["src"]["projected"] and layer.proj is not None
    assert layer.table.weight.shape == (V, 4)
    assert torch.equal(
        layer.table.weight[TOK.vocab.index("▁cat")].detach(), torch.tensor(WORDS["cat"])
    )
    assert layer(torch.tensor([5])).shape == (1, 6)
    # A checkpoint of it loads into a model built from the model config alone.
    fresh = make_model(emb_dim=6)
    fresh.load_state_dict(model.state_dict())
    src = torch.tensor([[5, 6, 7]])
    tgt = torch.tensor([[2, 5]])
    torch.testing.assert_close(
        fresh.eval()(src, torch.tensor([3]), tgt)[0], model.eval()(src, torch.tensor([3]), tgt)[0]
    )
    tied = make_model(emb_dim=6, tie_embeddings=True)
    with pytest.raises(ConfigError, match="tie"):
        apply_pretrained(tied, emb_config(tgt=side), TOK, TOK, TRAIN, ".")


def test_without_projection_vectors_are_fitted_to_the_model_width(tmp_path):
    path = write_vectors(tmp_path, "glove")
    side = dict(init="file", path=str(path), format="glove", project=False)
    wide = make_model(emb_dim=6)  # 4-dim vectors: two random columns added
    report = apply_pretrained(wide, emb_config(src=side), TOK, TOK, TRAIN, str(tmp_path))
    layer = wide.embedding_layers()["src"]
    assert layer.proj is None and layer.table.weight.shape == (V, 6)
    assert not report["src"]["projected"] and report["src"]["dim"] == 4
    cat = layer.table.weight[TOK.vocab.index("▁cat")].detach()
    assert torch.equal(cat[:4], torch.tensor(WORDS["cat"])) and cat[4:].abs().sum() > 0
    assert not layer.table.weight[PAD_ID].any()
    # 4-dim vectors into a 3-dim model: the top 3 principal components of the covered rows.
    narrow = make_model(emb_dim=3)
    apply_pretrained(narrow, emb_config(src=side), TOK, TOK, TRAIN, str(tmp_path))
    rows = [TOK.vocab.index(p) for p in ("▁the", "▁cat", "▁Dog", "▁car")]
    got = narrow.embedding_layers()["src"].table.weight.detach()[rows].double()
    words = torch.tensor([WORDS[w] for w in ("the", "cat", "dog", "car")], dtype=torch.float64)
    centered = words - words.mean(0)
    top3 = torch.linalg.svd(centered, full_matrices=False)[2][:3]
    expected = centered @ top3.T
    scale = got.norm() / expected.norm()  # one overall scale factor (the spread is kept)
    torch.testing.assert_close(got, expected * scale, atol=1e-5, rtol=1e-4)


def test_frozen_rows_stay_and_unfrozen_rows_learn(tmp_path):
    path = write_vectors(tmp_path, "glove")
    side = dict(init="file", path=str(path), format="glove")
    model = make_model()
    report = apply_pretrained(
        model, emb_config(src=dict(side, freeze=True), tgt=side), TOK, TOK, TRAIN, str(tmp_path)
    )
    assert report["src"]["frozen"] and not report["tgt"]["frozen"]
    src_before, tgt_before = table(model, "src").clone(), table(model, "tgt").clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 4, 0]])
    tgt = torch.tensor([[2, 5, 6], [2, 8, 9]])
    for _ in range(3):
        log_probs, _ = model(src, torch.tensor([4, 3]), tgt)
        loss = -log_probs[:, :, 4].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(table(model, "src"), src_before)
    changed = (table(model, "tgt") != tgt_before).any(dim=1)
    assert changed[[5, 6, 8, 9]].all()


def test_config_errors(tmp_path):
    model = make_model()
    with pytest.raises(ConfigError, match="embeddings.src.path"):
        apply_pretrained(model, emb_config(src=dict(init="file")), TOK, TOK, TRAIN, ".")
    with pytest.raises(ConfigError, match="does not exist"):
        apply_pretrained(
            model,
            emb_config(src=dict(init="file", path=str(tmp_path / "no.txt"))),
            TOK,
            TOK,
            TRAIN,
            ".",
        )
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="word2vec_bin"):
        side = dict(init="file", path=str(bad), format="word2vec_bin")
        apply_pretrained(model, emb_config(src=side), TOK, TOK, TRAIN, ".")
    with pytest.raises(ConfigError, match="freeze"):
        apply_pretrained(
            make_model(tie_embeddings=True), emb_config(tgt=dict(freeze=True)), TOK, TOK, TRAIN, "."
        )
    shared = make_model(share_embeddings=True)
    path = write_vectors(tmp_path, "glove")
    with pytest.raises(ConfigError, match="share_embeddings"):
        side = dict(init="file", path=str(path))
        apply_pretrained(shared, emb_config(src=side), TOK, TOK, TRAIN, ".")


def pets_and_vehicles(n: int = 2000, seed: int = 0) -> list[list[str]]:
    """'cat'/'dog' share one set of contexts, 'car'/'truck' another (none shared)."""
    rng = random.Random(seed)
    pets = ["feed", "pet", "furry", "tail", "vet", "paws", "sleepy", "purrs"]
    cars = ["drive", "park", "engine", "wheels", "fuel", "garage", "brakes", "road"]
    out = []
    for i in range(n):
        context, words = (pets, ["cat", "dog"]) if i % 2 else (cars, ["car", "truck"])
        sentence = rng.sample(context, 4)
        sentence.insert(2, rng.choice(words))
        out.append(sentence)
    return out


CORPUS = pets_and_vehicles()


def w2v_config(**overrides):
    opts = dict(init="word2vec", window=2, epochs=20, seed=7, workers=1)
    opts.update(overrides)
    return OmegaConf.structured(EmbeddingSideConfig(**opts))


def test_word2vec_is_deterministic_sensible_and_cached(tmp_path):
    a = train_vectors(CORPUS, w2v_config(), 16, str(tmp_path / "a"))
    b = train_vectors(CORPUS, w2v_config(), 16, str(tmp_path / "b"))
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.most_similar("cat", topn=1)[0][0] == "dog"
    assert a.most_similar("car", topn=1)[0][0] == "truck"
    assert a.similarity("cat", "dog") > a.similarity("cat", "car") + 0.3
    assert list((tmp_path / "a" / "vectors").iterdir())  # cached by a hash of the inputs
    again = train_vectors(CORPUS, w2v_config(), 16, str(tmp_path / "a"))
    np.testing.assert_array_equal(again.vectors, a.vectors)
    other = train_vectors(CORPUS, w2v_config(seed=8), 16, str(tmp_path / "a"))
    assert not np.array_equal(other.vectors, a.vectors)
    assert len(list((tmp_path / "a" / "vectors").iterdir())) == 2


@pytest.mark.parametrize("init", ["word2vec", "fasttext"])
def test_apply_trained_vectors_cover_the_training_pieces(tmp_path, init):
    model = make_model()
    side = dict(init=init, epochs=1, workers=1)
    text = {"src": TRAIN["src"], "tgt": TRAIN["tgt"], "tgt_mono": ["the zebra"]}
    report = apply_pretrained(model, emb_config(src=side, tgt=side), TOK, TOK, text, str(tmp_path))
    if init == "word2vec":
        # Pieces seen in the text: the cat s Dog zebra car (not "ing"); tgt + mono: the car zebra.
        assert report["src"]["types"] == pytest.approx(6 / 7)
        assert report["tgt"]["types"] == pytest.approx(3 / 7)
    else:
        assert report["src"]["types"] == 1.0  # n-grams give every piece a vector
    assert report["src"]["tokens"] == 1.0 and report["tgt"]["tokens"] == 1.0
    assert report["src"]["dim"] == 4
