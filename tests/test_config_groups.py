"""The keys of one task or one corpus sit in their own group (issue #17): ``data.local``
(data=local's files), ``data.held_out`` (the split cut out of tatoeba_en_fr) and
``train.char_lm`` (the char LM's batching). Their defaults, the old flat names in old
checkpoints and run records, on the command line, and in the prepared-data cache key.

Every group option and recipe still composes: tests/test_configs.py."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import sentencepiece as spm
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.config import (
    MOVED_KEYS,
    check_known_keys,
    conf_dir,
    from_plain,
    register_configs,
    to_plain,
    unknown_key_message,
)
from nmt.errors import ConfigError

LOCAL_KEYS = [f"{s}_{k}" for s in ("train", "valid", "test") for k in ("src", "tgt", "tsv")]


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _old_flat(plain: dict) -> dict:
    """``plain`` written the way configs were before the keys were grouped."""
    data = {k: v for k, v in plain["data"].items() if k not in ("local", "held_out")}
    data.update(plain["data"]["local"])
    held = plain["data"]["held_out"]
    data.update(split_seed=held["seed"], valid_size=held["valid_size"])
    data["test_size"] = held["test_size"]
    train = {k: v for k, v in plain["train"].items() if k != "char_lm"}
    train.update(plain["train"]["char_lm"])
    return {**plain, "data": data, "train": train}


def test_the_groups_default_correctly():
    cfg = _compose()  # data=multi30k_en_fr, train=default
    assert dict(cfg.train.char_lm) == {"bptt_len": 128, "batch_size": 64}
    assert dict(cfg.data.held_out) == {"seed": 1234, "valid_size": 2000, "test_size": 5000}
    assert dict(cfg.data.local) == dict.fromkeys(LOCAL_KEYS)
    for old, new in MOVED_KEYS.items():  # only the new places exist
        assert OmegaConf.select(cfg, old) is None and OmegaConf.select(cfg, new, default=0) != 0
    lm = _compose("data=tinyshakespeare", "model=char_lm", "train=char_lm")
    assert dict(lm.train.char_lm) == {"bptt_len": 128, "batch_size": 64}
    local = _compose("data=local", "data.local.train_tsv=t.tsv", "data.held_out.seed=7")
    assert local.data.local.train_tsv == "t.tsv" and local.data.local.valid_src is None
    assert local.data.held_out.seed == 7 and local.data.held_out.valid_size == 2000


def test_an_old_checkpoint_config_loads_into_the_new_places():
    old = {
        "train": {"bptt_len": 32, "batch_size": 8, "lr": 0.01},
        "data": {"name": "local", "train_src": "a.en", "valid_tsv": "v.tsv", "split_seed": 7},
    }
    before = repr(old)
    cfg = from_plain(old)
    assert cfg.train.char_lm.bptt_len == 32 and cfg.train.char_lm.batch_size == 8
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.data.local.train_src == "a.en" and cfg.data.local.valid_tsv == "v.tsv"
    assert cfg.data.local.train_tgt is None and cfg.data.held_out.seed == 7
    assert cfg.data.held_out.valid_size == 2000  # what was not written keeps its default
    assert repr(old) == before  # the checkpoint's own dict is not changed
    # A whole config written the old way reads back as the same config.
    plain = to_plain(_compose("data=local", "train=char_lm", "data.local.train_src=x.en"))
    assert to_plain(from_plain(_old_flat(plain))) == plain
    with pytest.raises(Exception):  # noqa: B017 - a key that never existed still fails
        from_plain({"train": {"bptt": 3}})


def test_an_old_run_resumes_under_the_new_keys():
    from nmt.train.runfolder import check_resume_config

    plain = to_plain(_compose("data=local", "data.local.train_src=x.en"))
    assert check_resume_config(Path("last.pt"), _old_flat(plain), plain) == []


@pytest.mark.parametrize("old", sorted(MOVED_KEYS))
def test_an_old_key_is_unknown_and_named_with_its_new_name(old):
    message = unknown_key_message(old)
    assert message.startswith(f"unknown config key '{old}': ") and MOVED_KEYS[old] in message
    section, key = old.split(".")
    with pytest.raises(ConfigError, match=re.escape(MOVED_KEYS[old])):
        check_known_keys(OmegaConf.create({section: {key: 1}}))


def test_the_old_batch_size_points_translation_at_its_own_batching_keys():
    """train.batch_size was the char LM's: a translation user is told what batches translation."""
    message = unknown_key_message("train.batch_size")
    assert "train.max_tokens or train.max_sentences" in message
    assert "train.char_lm.batch_size" in message and "did you mean" not in message


def test_an_old_run_that_recorded_adam_capitalised_still_resumes():
    """Before the choices were Enums, train.optimizer was matched without regard to case."""
    from nmt.train.runfolder import check_resume_config

    plain = to_plain(_compose("data=local", "data.local.train_src=x.en"))
    old = {**plain, "train": {**plain["train"], "optimizer": "Adam"}}
    assert check_resume_config(Path("last.pt"), old, plain) == []
    assert from_plain(old).train.optimizer == "adam"


def test_the_prepared_data_cache_key_is_the_one_from_before_the_grouping():
    """Caches prepared before the keys were grouped stay valid: the key hashes the held-out
    values under their old names (data.split_seed ...), as before."""
    from nmt.data.prepare import CACHE_VERSION, TOKENIZER_KEYS, cache_key

    cfg = _compose("data=tatoeba_en_fr", "data.held_out.seed=7", "data.held_out.test_size=30")
    d = cfg.data
    old = {f"data.{k}": d[k] for k in ("name", "src_lang", "tgt_lang", "max_len")}
    old.update({f"data.{k}": d[k] for k in ("max_len_ratio", "on_bad_utf8", "train_limit")})
    old.update({"data.use_mono": d.use_mono, "data.valid_split": d.valid_split})
    old.update({"data.split_seed": 7, "data.valid_size": 2000, "data.test_size": 30})
    old.update({f"tokenizer.{k}": cfg.tokenizer[k] for k in TOKENIZER_KEYS})
    text = f"v={CACHE_VERSION};spm={spm.__version__};files=F;{sorted(old.items())!r}"
    assert cache_key(cfg, "F") == hashlib.sha256(text.encode()).hexdigest()[:24]
    cfg.data.held_out.seed = 8
    assert cache_key(cfg, "F") != hashlib.sha256(text.encode()).hexdigest()[:24]
