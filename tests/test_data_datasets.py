"""The corpus registry on the real data mirror: Multi30k, the grouped Tatoeba split, local."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from nmt.config import DataConfig, LocalDataConfig
from nmt.data import datasets
from nmt.data.cleaning import clean_text
from nmt.errors import ConfigError, DataError


def _cfg(name, mirror, tmp_path, **kw):
    return OmegaConf.structured(
        DataConfig(name=name, mirror=str(mirror), cache_dir=str(tmp_path), **kw)
    )


def test_multi30k_splits_have_the_published_sizes(shared_data, tmp_path):
    raw = datasets.load_raw(_cfg("multi30k_en_fr", shared_data, tmp_path))
    sizes = {name: (len(s), len(t)) for name, (s, t) in raw.splits.items()}
    assert sizes == {
        "train": (29000, 29000),
        "val": (1014, 1014),
        "test_2016_flickr": (1000, 1000),
        "test_2017_flickr": (1000, 1000),
        "test_2017_mscoco": (461, 461),
    }
    assert raw.splits["train"][0][0].startswith("Two young, White males")
    assert raw.mono == []


def test_multi30k_reverse_direction(shared_data, tmp_path):
    raw = datasets.load_raw(
        _cfg("multi30k_en_fr", shared_data, tmp_path, src_lang="fr", tgt_lang="en")
    )
    fwd = datasets.load_raw(_cfg("multi30k_en_fr", shared_data, tmp_path))
    assert raw.splits["val"] == (fwd.splits["val"][1], fwd.splits["val"][0])
    with pytest.raises(ConfigError, match="src_lang"):
        datasets.locate(_cfg("multi30k_en_fr", shared_data, tmp_path, src_lang="de"))


def test_tatoeba_split_is_grouped_sized_and_deterministic(shared_data, tmp_path):
    cfg = _cfg("tatoeba_en_fr", shared_data, tmp_path)
    raw = datasets.load_raw(cfg)
    sizes = {name: len(s) for name, (s, _) in raw.splits.items()}
    assert sizes["val"] == pytest.approx(2000, abs=20) and sizes["test"] == pytest.approx(
        5000, abs=20
    )
    assert sum(sizes.values()) == 142787  # every pair lands in exactly one split
    english = {name: {clean_text(x) for x in s} for name, (s, _) in raw.splits.items()}
    assert not english["train"] & english["val"]
    assert not english["train"] & english["test"]
    assert not english["val"] & english["test"]
    # Grouping matters here: many English sentences have several French translations.
    assert len(english["train"]) < sizes["train"]
    en, fr = datasets.read_tatoeba(shared_data / "tatoeba" / "fra-eng.zip")
    parts = datasets.split_grouped(en, 2000, 5000, cfg.held_out.seed)
    # Deterministic: a second split with the same seed is the one load_raw made.
    assert raw.splits["test"][0] == [en[i] for i in parts["test"]]
    assert raw.splits["val"][1] == [fr[i] for i in parts["val"]]
    assert datasets.split_grouped(en, 2000, 5000, 7)["test"] != parts["test"]


def test_split_grouped_small():
    keys = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]
    parts = datasets.split_grouped(keys, valid_size=2, test_size=3, seed=0)
    assert sorted(sum(parts.values(), [])) == list(range(10))
    assert len(parts["test"]) == 3 and len(parts["val"]) == 2
    for name, idx in parts.items():
        others = {keys[i] for n, ix in parts.items() if n != name for i in ix}
        assert not {keys[i] for i in idx} & others


def test_tinyshakespeare_text_split(shared_data, tmp_path):
    text = datasets.load_text(_cfg("tinyshakespeare", shared_data, tmp_path))
    assert len(text["train"]) + len(text["val"]) == 1115394
    assert len(text["train"]) == int(1115394 * 0.9)
    assert text["train"].startswith("First Citizen:")
    with pytest.raises(ConfigError, match="prepare_text"):
        datasets.load_raw(_cfg("tinyshakespeare", shared_data, tmp_path))


def test_local_files_and_tsv(tmp_path, tiny_parallel):
    f = tiny_parallel
    (tmp_path / "val.tsv").write_text("hello\tbonjour\nbye\tau revoir\n")
    cfg = OmegaConf.structured(
        DataConfig(
            name="local",
            cache_dir=str(tmp_path),
            local=LocalDataConfig(
                train_src=str(f["train_src"]),
                train_tgt=str(f["train_tgt"]),
                valid_tsv=str(tmp_path / "val.tsv"),
            ),
        )
    )
    raw = datasets.load_raw(cfg)
    assert set(raw.splits) == {"train", "val"}
    assert len(raw.splits["train"][0]) == 400
    assert raw.splits["val"] == (["hello", "bye"], ["bonjour", "au revoir"])
    # The fingerprint follows the files' content.
    before = datasets.locate(cfg).fingerprint
    (tmp_path / "val.tsv").write_text("hello\tsalut\n")
    assert datasets.locate(cfg).fingerprint != before


def test_local_config_mistakes(tmp_path):
    with pytest.raises(ConfigError, match="data.local.train_src and data.local.train_tgt"):
        datasets.locate(OmegaConf.structured(DataConfig(name="local", cache_dir=str(tmp_path))))
    nope = str(tmp_path / "nope.tsv")
    cfg = DataConfig(name="local", local=LocalDataConfig(train_tsv=nope, valid_tsv=nope))
    with pytest.raises(DataError, match="data.local.train_tsv file .*nope.tsv does not exist"):
        datasets.locate(OmegaConf.structured(cfg))
    with pytest.raises(ConfigError, match="unknown"):
        datasets.locate(OmegaConf.structured(DataConfig(name="wmt14")))
