"""prepare(): cleaning counts, evaluation sets untouched, cache reuse and invalidation."""

from __future__ import annotations

import shutil

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import nmt.config
from nmt.config import UNK_ID
from nmt.data import tokenizer as tokmod
from nmt.data.batching import pair_lengths
from nmt.data.cleaning import normalize
from nmt.data.prepare import prepare, prepare_text


def _compose(overrides):
    nmt.config.register_configs()
    with initialize_config_dir(config_dir=str(nmt.config.conf_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def _local(files, *extra):
    return _compose(
        [
            "data=local",
            f"data.local.train_src={files['train_src']}",
            f"data.local.train_tgt={files['train_tgt']}",
            f"data.local.valid_src={files['valid_src']}",
            f"data.local.valid_tgt={files['valid_tgt']}",
            f"data.local.test_src={files['test_src']}",
            f"data.local.test_tgt={files['test_tgt']}",
            "tokenizer.vocab_size=500",
            *extra,
        ]
    )


@pytest.fixture()
def files(tiny_parallel, tmp_path):
    """A private copy of the tiny corpus (some tests edit it)."""
    out = {}
    for key, path in tiny_parallel.items():
        out[key] = tmp_path / path.name
        shutil.copy(path, out[key])
    return out


def test_prepare_local_encodes_every_split(files):
    data = prepare(_local(files))
    assert set(data.splits) == {"train", "val", "test"}
    assert [len(data.splits[s]) for s in ("val", "test")] == [50, 50]
    assert len(data.splits["train"]) >= 395  # a few pairs may fail the ratio check
    val = data.splits["val"]
    raw = files["valid_src"].read_text(encoding="utf-8").splitlines()
    assert val.src_text == [normalize(x) for x in raw]  # same order, nothing dropped
    assert all(t.dtype == torch.long and t.dim() == 1 for t in val.src + val.tgt)
    assert val.src[0].tolist() == data.src_tok.encode(raw[0])
    assert data.splits["train"].src_text is None
    train = data.splits["train"]
    assert pair_lengths(train).tolist() == [[len(s), len(t)] for s, t in zip(train.src, train.tgt)]
    # train_text: the cleaned training text of the kept pairs, one line per pair.
    assert set(data.train_text) == {"src", "tgt"}
    assert len(data.train_text["tgt"]) == len(data.splits["train"])
    pairs = zip(data.train_text["src"], data.splits["train"].src)
    assert all(data.src_tok.encode(line) == ids.tolist() for line, ids in pairs)
    table = data.summary()
    assert "train" in table and "400" in table and "unknown pieces on val" in table


def test_second_prepare_reuses_the_cache_and_options_invalidate_it(files):
    count = tokmod.TRAIN_COUNT
    first = prepare(_local(files))
    assert not first.from_cache and tokmod.TRAIN_COUNT == count + 1
    mtime = first.cache_path.stat().st_mtime_ns
    again = prepare(_local(files))
    assert again.from_cache and again.cache_path == first.cache_path
    assert tokmod.TRAIN_COUNT == count + 1 and first.cache_path.stat().st_mtime_ns == mtime
    assert all(a.equal(b) for a, b in zip(first.splits["train"].tgt, again.splits["train"].tgt))
    assert again.splits["val"].tgt_text == first.splits["val"].tgt_text
    assert again.summary().splitlines()[1:] == first.summary().splitlines()[1:]
    # A cleaning option: re-encoded, same tokenizer (its training text did not change).
    short = prepare(_local(files, "data.max_len=12"))
    assert not short.from_cache and short.cache_path != first.cache_path
    assert tokmod.TRAIN_COUNT == count + 1
    assert short.stats["splits"]["train"]["drops"]["too_long"] > 0
    assert max(len(x) for x in short.splits["train"].src + short.splits["train"].tgt) <= 12
    # A tokenizer option retrains; so does changed training data.
    prepare(_local(files, "tokenizer.vocab_size=450"))
    assert tokmod.TRAIN_COUNT == count + 2
    with (
        open(files["train_src"], "a", encoding="utf-8") as f,
        open(files["train_tgt"], "a", encoding="utf-8") as g,
    ):
        f.write("One more sentence.\n")
        g.write("Encore une phrase.\n")
    changed = prepare(_local(files))
    assert not changed.from_cache and tokmod.TRAIN_COUNT == count + 3


def test_training_pairs_are_cleaned_and_every_drop_counted(files, tmp_path):
    src = files["train_src"].read_text(encoding="utf-8").splitlines()
    tgt = files["train_tgt"].read_text(encoding="utf-8").splitlines()
    src += ["An empty target.", "   ", "zero\u200bwidth", "word " * 60, "Short."]
    tgt += [
        "",
        "Vide.",
        "zéro",
        "mot " * 60,
        "Une phrase beaucoup beaucoup plus longue que la source anglaise.",
    ]
    files["train_src"].write_text("\n".join(src) + "\n", encoding="utf-8")
    files["train_tgt"].write_text("\n".join(tgt) + "\n", encoding="utf-8")
    # Evaluation text is never filtered: an empty line and odd spacing stay in place.
    val = files["valid_src"].read_text(encoding="utf-8").splitlines()
    val[3] = "  "
    files["valid_src"].write_text("\n".join(val) + "\n", encoding="utf-8")
    data = prepare(_local(files, "data.max_len=50"))
    drops = data.stats["splits"]["train"]["drops"]
    assert drops["empty"] == 2 and drops["too_long"] >= 1 and drops["ratio"] >= 1
    assert len(data.splits["train"]) == 405 - sum(drops.values())
    assert "zerowidth" in [data.src_tok.decode(x) for x in data.splits["train"].src]
    assert len(data.splits["val"]) == 50 and data.splits["val"].src_text[3] == ""
    assert len(data.splits["val"].src[3]) == 0
    limited = prepare(_local(files, "data.train_limit=100"))
    assert len(limited.splits["train"]) <= 100
    assert limited.stats["splits"]["train"]["drops"]["train_limit"] == 405 - 2 - 100
    assert "train_limit=303" in limited.summary()


def test_prepare_text_tinyshakespeare(shared_data):
    text = prepare_text(_compose(["data=tinyshakespeare", f"data.mirror={shared_data}"]))
    assert len(text.train) + len(text.val) == 1115394
    assert text.vocab.size == 65 + 2 and text.vocab.encode("\n").tolist() != [UNK_ID]
    assert text.vocab.decode(text.train[:200]) == open(
        shared_data / "tinyshakespeare/input.txt"
    ).read(200)
    assert text.train.dtype == torch.long and int(text.train.max()) < text.vocab.size
    again = type(text.vocab).from_state_dict(text.vocab.state_dict())
    assert again.itos == text.vocab.itos
    assert text.vocab.encode("Zq\u00e9").tolist()[-1] == UNK_ID  # unseen character
    assert "67" in text.summary()


def test_config_typo_names_the_key():
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["data.max_lenn=5"])
    assert "max_lenn" in str(err.value) + str(err.value.__cause__)


def test_multi30k_with_monolingual_text(shared_data):
    overrides = ["data=multi30k_en_fr", f"data.mirror={shared_data}", "data.use_mono=true"]
    data = prepare(_compose([*overrides, "data.train_limit=300", "tokenizer.vocab_size=600"]))
    assert len(data.train_text["src"]) == len(data.splits["train"]) <= 300
    assert set(data.train_text) == {"src", "tgt", "src_mono"}
    assert len(data.train_text["src_mono"]) == 5 * 29000  # English captions, source side
    assert [len(data.splits[s]) for s in ("val", "test_2016_flickr", "test_2017_mscoco")] == [
        1014,
        1000,
        461,
    ]
    assert "src_mono 145000" in data.summary()
