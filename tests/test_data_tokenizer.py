"""sentencepiece tokenizers: round trip, fixed ids, restriction, state dict, cache, errors."""

from __future__ import annotations

import gzip
import io
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TokenizerConfig
from nmt.data import tokenizer as tokmod
from nmt.data.cleaning import clean_text
from nmt.data.tokenizer import Tokenizer, build_tokenizers, train_model, train_or_load
from nmt.errors import ConfigError

N_TRAIN = 3000


def read_gz(path, limit=None):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit else lines


def _cfg(**kw):
    base = {"vocab_size": 1000, **kw}
    return OmegaConf.structured(TokenizerConfig(**base))


@pytest.fixture(scope="module")
def m30k(shared_data):
    m = shared_data / "multi30k"
    return {
        "en": [clean_text(x) for x in read_gz(m / "train.en.gz", N_TRAIN)],
        "fr": [clean_text(x) for x in read_gz(m / "train.fr.gz", N_TRAIN)],
        "val_en": read_gz(m / "val.en.gz"),
        "val_fr": read_gz(m / "val.fr.gz"),
    }


@pytest.fixture(scope="module")
def joint(m30k):
    return Tokenizer(train_model(m30k["en"] + m30k["fr"], _cfg()))


def test_special_ids_are_fixed(joint):
    assert [joint.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    ]
    assert joint.vocab_size == 1000
    ids = joint.encode("A man rides a bike.")
    assert ids and BOS_ID not in ids and EOS_ID not in ids
    assert joint.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "A man rides a bike."


def test_round_trip_on_multi30k_val(joint, m30k):
    exact = total = 0
    for line in m30k["val_en"] + m30k["val_fr"]:
        ids = joint.encode(line)
        if UNK_ID in ids:
            continue
        total += 1
        assert joint.decode(ids) == clean_text(line), line
        exact += 1
    assert total > 0.95 * (len(m30k["val_en"]) * 2)  # characters unseen in 3k lines are rare
    pieces = joint.pieces("Un homme fait du vélo.")
    assert [joint.piece_to_id(p) for p in pieces] == joint.encode("Un homme fait du vélo.")
    assert joint.encode_batch(["Un chien.", "A dog."]) == [
        joint.encode("Un chien."),
        joint.encode("A dog."),
    ]


def test_training_is_deterministic(m30k):
    lines = m30k["en"][:1000]
    assert train_model(lines, _cfg(vocab_size=300)) == train_model(lines, _cfg(vocab_size=300))


@pytest.mark.parametrize(("model_type", "vocab"), [("bpe", 500), ("char", 400), ("word", 20000)])
def test_other_model_types(m30k, model_type, vocab):
    tok = Tokenizer(train_model(m30k["en"][:1000], _cfg(model_type=model_type, vocab_size=vocab)))
    line = m30k["en"][1]
    assert tok.decode(tok.encode(line)) == line
    if model_type == "char":
        assert len(tok.encode(line)) == len(line) + 1  # one piece per character, + the leading "▁"
    if model_type == "word":
        assert len(tok.encode(line)) == len(line.split())


def test_state_dict_loads_with_weights_only(joint, tmp_path):
    buf = io.BytesIO()
    torch.save({"tok": joint.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["tok"]
    again = Tokenizer.from_state_dict(state)
    line = "Deux chiens jouent dans la neige."
    assert again.encode(line) == joint.encode(line) and again.vocab_size == joint.vocab_size
    assert pickle.loads(pickle.dumps(joint)).encode(line) == joint.encode(line)


def test_restrict_vocab_keeps_only_pieces_seen_on_each_side(m30k, tmp_path):
    src, tgt = build_tokenizers(m30k["en"], m30k["fr"], _cfg(restrict_vocab=True), tmp_path)
    full = Tokenizer(src.model_proto)
    assert src.vocab_size < full.vocab_size and tgt.vocab_size < full.vocab_size
    assert src.vocab_size != tgt.vocab_size
    seen = {i for line in m30k["en"] for i in full.encode(line)}
    assert src.vocab_size == len(seen | {0, 1, 2, 3})
    # Ids are dense and map back to the same pieces; training text never hits unk.
    for line in m30k["en"][:200]:
        ids = src.encode(line)
        assert max(ids) < src.vocab_size and UNK_ID not in ids
        assert src.pieces(line) == [full.id_to_piece(i) for i in full.encode(line)]
        assert src.decode(ids) == line
    assert [src.piece_to_id(src.id_to_piece(i)) for i in range(src.vocab_size)] == list(
        range(src.vocab_size)
    )
    # A piece only the French side uses is unknown to the English side.
    fr_only = next(p for p in tgt.vocab()[4:] if src.piece_to_id(p) == UNK_ID)
    assert full.piece_to_id(fr_only) != UNK_ID
    restored = Tokenizer.from_state_dict(src.state_dict())
    assert restored.encode(m30k["en"][5]) == src.encode(m30k["en"][5])


def test_tokenizer_cache_reuses_the_trained_model(m30k, tmp_path):
    lines = m30k["en"][:800]
    before = tokmod.TRAIN_COUNT
    a = train_or_load(lines, _cfg(vocab_size=300), tmp_path)
    b = train_or_load(lines, _cfg(vocab_size=300), tmp_path)
    assert tokmod.TRAIN_COUNT == before + 1 and a.model_proto == b.model_proto
    train_or_load(lines, _cfg(vocab_size=310), tmp_path)  # another option: another model
    train_or_load(lines[:-1], _cfg(vocab_size=300), tmp_path)  # other text: another model
    assert tokmod.TRAIN_COUNT == before + 3
    assert len(list((tmp_path / "tokenizers").glob("*.model"))) == 3


def test_vocab_size_too_small_is_a_config_error(m30k):
    with pytest.raises(ConfigError, match="tokenizer.vocab_size"):
        train_model(m30k["en"][:500], _cfg(vocab_size=20))
    # A plain dataclass: a DictConfig already refuses it (tokenizer.model_type is a choice).
    with pytest.raises(ConfigError, match="model_type"):
        train_model(m30k["en"][:500], TokenizerConfig(vocab_size=1000, model_type="wordpiece"))
