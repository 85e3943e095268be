"""nmt.inference and nmt.devices: loading trained models outside training."""

from __future__ import annotations

import pytest
import torch
from conftest import make_checkpoint

from nmt.config import TokenizerConfig
from nmt.data.charvocab import CharVocab
from nmt.data.tokenizer import Tokenizer, train_model
from nmt.devices import resolve_device
from nmt.errors import ConfigError, NMTError
from nmt.inference import (
    has_attention,
    load_for_inference,
    load_translation_model,
    resolve_checkpoint,
    same_vocabulary,
)
from nmt.search.ensemble import Ensemble
from nmt.search.translator import Translator

SENTENCES = ["A man in an orange hat.", "Two dogs run on the grass.", "A girl is eating."]


def test_one_device_resolver_names_the_key():
    assert resolve_device("cpu", "--device") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", "train.device").type == expected
    with pytest.raises(ConfigError, match=r"train\.device='tpu' is unknown"):
        resolve_device("tpu", "train.device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"--device=cuda .* no CUDA GPU"):
            resolve_device("cuda", "--device")


def test_same_vocabulary_compares_pieces_not_sizes(tiny_lines, tiny_tokenizer):
    other = Tokenizer(train_model(tiny_lines[::-1][:500], TokenizerConfig(vocab_size=120)))
    assert len(other) == len(tiny_tokenizer)
    copy = Tokenizer.from_state_dict(tiny_tokenizer.state_dict())
    assert same_vocabulary(tiny_tokenizer, copy)
    assert not same_vocabulary(tiny_tokenizer, other)
    chars = CharVocab.build("".join(tiny_lines[:50]))
    assert same_vocabulary(chars, CharVocab.from_state_dict(chars.state_dict()))
    assert not same_vocabulary(chars, tiny_tokenizer)


def test_loading_a_run_folder_and_an_ensemble(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    run = tmp_path / "run"
    make_checkpoint(run / "last.pt", tok, tok, seed=1)
    assert resolve_checkpoint(run).name == "last.pt"
    make_checkpoint(run / "best.pt", tok, tok, seed=2)
    assert resolve_checkpoint(run).name == "best.pt"
    model, src, tgt, cfg = load_for_inference(run)
    assert not model.training and len(src) == len(tgt) == len(tok) and has_attention(model)

    single, src, tgt, decode, _ = load_translation_model(run, [], torch.device("cpu"))
    twins, *_ = load_translation_model(run, [str(run / "best.pt")], torch.device("cpu"))
    assert isinstance(twins, Ensemble) and decode.beam_size == 3
    # An ensemble of two identical models is the model itself (mean of equal probabilities).
    one = Translator(single, src, tgt, decode, torch.device("cpu")).translate_nbest(SENTENCES)
    two = Translator(twins, src, tgt, decode, torch.device("cpu")).translate_nbest(SENTENCES)
    for a, b in zip(one, two, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


def test_translation_loader_refuses_a_char_lm_and_foreign_members(
    tiny_lines, tiny_tokenizer, tmp_path
):
    chars = CharVocab.build("".join(tiny_lines[:50]))
    lm = make_checkpoint(tmp_path / "lm.pt", chars, chars, arch="char_lm")
    with pytest.raises(NMTError, match="char_lm checkpoint, not a translation model"):
        load_translation_model(lm, [], torch.device("cpu"))
    tok = tiny_tokenizer
    other = Tokenizer(train_model(tiny_lines[:300], TokenizerConfig(vocab_size=120)))
    good = make_checkpoint(tmp_path / "good.pt", tok, tok)
    foreign = make_checkpoint(tmp_path / "foreign.pt", other, other)
    with pytest.raises(NMTError, match="uses other vocabularies"):
        load_translation_model(good, [str(foreign)], torch.device("cpu"))
