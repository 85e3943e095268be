"""Bad corpora: every one gives a clean, counted result or one error naming file and line.

The kept training pairs are checked against the original pairs, so a silent misalignment
(a line split in two on one side only, a dropped line on one side) cannot pass.
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import run_cli_in_process
from hydra import compose, initialize_config_dir

from nmt.config import conf_dir, register_configs
from nmt.data.cleaning import clean_text
from nmt.data.prepare import prepare
from nmt.errors import DataError


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("corpora_cache")


@pytest.fixture(autouse=True)
def _shared_tokenizer_cache(shared_cache, monkeypatch):
    """One cache for the module: most cases share their training text, so sentencepiece
    trains once (cache entries are keyed by content, so sharing cannot mix results)."""
    monkeypatch.setenv("NMT_CACHE_DIR", str(shared_cache))


@pytest.fixture()
def corpus(tiny_parallel, tmp_path):
    """The tiny corpus as lists of lines, and a writer of (possibly damaged) copies."""
    data = {key: _lines(path) for key, path in tiny_parallel.items()}

    def write(name: str, lines: list[str] | None = None, raw: bytes | None = None, nl="\n"):
        path = tmp_path / name
        path.write_bytes(raw if raw is not None else "".join(x + nl for x in lines).encode())
        return path

    return data, write


def _args(files: dict, *extra: str) -> list[str]:
    args = ["data=local", "tokenizer.vocab_size=200", "data.test_splits=[]"]
    return args + [f"data.local.{key}={path}" for key, path in files.items()] + list(extra)


def _cfg(files: dict, *extra: str):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=_args(files, *extra))


def _files(tiny_parallel, **changed) -> dict:
    files = {k: tiny_parallel[k] for k in ("train_src", "train_tgt", "valid_src", "valid_tgt")}
    return {**files, **changed}


def _cli(args: list[str], tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """``nmt-prepare`` in this process: (exit code, stderr)."""
    from nmt.cli.prepare import main

    argv = ["nmt-prepare", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    return run_cli_in_process(main, argv, monkeypatch, capsys)


def _pairs(src: list[str], tgt: list[str]) -> set[tuple[str, str]]:
    return {(clean_text(s), clean_text(t)) for s, t in zip(src, tgt)}


def _assert_aligned(data, allowed: set[tuple[str, str]], dropped: set[tuple[str, str]]):
    """Every kept training pair is an original pair; the damaged ones are gone."""
    kept = list(zip(data.train_text["src"], data.train_text["tgt"]))
    assert kept and set(kept) <= allowed
    assert not set(kept) & dropped
    read = data.stats["splits"]["train"]["read"]
    assert len(kept) == read - sum(data.stats["splits"]["train"]["drops"].values())


def _bad(name, corpus, tiny_parallel):
    """(files, extra overrides, expected message regex) of one bad corpus."""
    (d, write), p = corpus, tiny_parallel
    src = d["train_src"]
    if name == "unequal_line_counts":
        return (
            _files(p, train_tgt=write("short.fr", d["train_tgt"][:-1])),
            [],
            (r"short\.fr has 399"),
        )
    if name == "invalid_utf8":
        raw = "".join(x + "\n" for x in src).encode()
        at = raw.index(b"\n", raw.index(b"\n") + 1) + 1  # the start of line 3
        raw = raw[:at] + b"caf\xe9 " + raw[at:]
        return (
            _files(p, train_src=write("latin1.en", raw=raw)),
            [],
            (r"latin1\.en line 3 is not valid UTF-8"),
        )
    if name == "empty_train_file":
        return (
            _files(p, train_src=write("e.en", []), train_tgt=write("e.fr", [])),
            [],
            (r"data\.local\.train_src file .*e\.en is empty"),
        )
    if name == "empty_valid_file":
        files = _files(p, valid_src=write("ev.en", []), valid_tgt=write("ev.fr", []))
        return files, [], r"data\.local\.valid_src file .*ev\.en is empty"
    if name == "tsv_line_without_tab":
        rows = [f"{s}\t{t}" for s, t in zip(src, d["train_tgt"])]
        rows[4] = rows[4].replace("\t", " ")
        files = {"train_tsv": write("t.tsv", rows), **_files(p)}
        del files["train_src"], files["train_tgt"]
        return files, [], r"t\.tsv line 5 has no tab"
    if name == "mac_cr_line_ends_on_one_side":  # one 'line' on one side: never misaligned
        files = _files(p, train_src=write("mac.en", src, nl="\r"))
        return files, [], r"mac\.en has 1 lines but .* has 400"
    if name == "only_invisible_characters":
        junk = write("junk.en", ["\u200b\x07\u2060\x1b" for _ in src])
        return _files(p, train_src=junk), [], r"no training pair .*junk\.en.* left after cleaning"
    if name == "every_pair_too_long":
        return _files(p), ["data.max_len=1"], r"no training pair .* left after the length filter"
    if name == "missing_file":
        return (
            _files(p, train_tgt=p["train_tgt"].parent / "nope.fr"),
            [],
            (r"data\.local\.train_tgt file .*nope\.fr does not exist"),
        )
    raise AssertionError(name)


BAD = [
    "unequal_line_counts",
    "invalid_utf8",
    "empty_train_file",
    "empty_valid_file",
    "tsv_line_without_tab",
    "mac_cr_line_ends_on_one_side",
    "only_invisible_characters",
    "every_pair_too_long",
    "missing_file",
]


# Through the console script too (the NMTError -> one line path is shared by all cases).
CLI = {"unequal_line_counts", "invalid_utf8", "tsv_line_without_tab", "empty_train_file"}


@pytest.mark.parametrize("name", BAD)
def test_bad_corpus_is_one_error_line_naming_the_file(
    name, corpus, tiny_parallel, tmp_path, monkeypatch, capsys
):
    files, extra, pattern = _bad(name, corpus, tiny_parallel)
    with pytest.raises(DataError, match=pattern):
        prepare(_cfg(files, *extra))
    if name not in CLI:
        return
    code, err = _cli(_args(files, *extra), tmp_path, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nmt: error: ")


def test_crlf_and_bom_give_the_same_pairs_as_lf(corpus, tiny_parallel):
    d, write = corpus
    crlf = write(
        "crlf.en", raw=b"\xef\xbb\xbf" + "".join(x + "\r\n" for x in d["train_src"]).encode()
    )
    base = prepare(_cfg(_files(tiny_parallel)))
    other = prepare(_cfg(_files(tiny_parallel, train_src=crlf)))
    assert other.train_text == base.train_text
    assert [x.tolist() for x in other.splits["train"].src] == [
        x.tolist() for x in base.splits["train"].src
    ]


def test_100k_character_lines_are_dropped_counted_and_pairs_stay_aligned(corpus, tiny_parallel):
    d, write = corpus
    src, tgt = list(d["train_src"]), list(d["train_tgt"])
    damaged = {7, 123}
    src[7] = "x" * 100_000
    tgt[123] = "mot " * 25_000
    val = list(d["valid_src"])
    val[2] = "y" * 100_000
    files = _files(
        tiny_parallel,
        train_src=write("long.en", src),
        train_tgt=write("long.fr", tgt),
        valid_src=write("longv.en", val),
    )
    data = prepare(_cfg(files))
    dropped = _pairs([src[i] for i in damaged], [tgt[i] for i in damaged])
    _assert_aligned(data, _pairs(src, tgt), dropped)
    assert data.stats["splits"]["train"]["drops"]["too_long"] >= 2
    assert "too_long=" in data.summary()
    # Evaluation sets are never filtered: the long line keeps its place.
    assert data.splits["val"].src_text[2] == "y" * 100_000
    assert len(data.splits["val"]) == len(val) == data.stats["splits"]["val"]["read"]


def test_control_and_zero_width_characters_are_removed_and_counted(corpus, tiny_parallel):
    d, write = corpus
    src, tgt = list(d["train_src"]), list(d["train_tgt"])
    src[0] = "\u200b\x00\x07\ufeff"  # nothing visible: the pair is dropped as empty
    # Unicode line/paragraph separators, NEL, VT, FF and FS inside a line never split it.
    src[1] = "A\u200bman\x1b \u2028 runs\x85 in a park\x0b\x0c\x1c."
    tgt[2] = "\u00a0Deux\u2060 chiens\u00ad !"
    files = _files(tiny_parallel, train_src=write("ctl.en", src), train_tgt=write("ctl.fr", tgt))
    data = prepare(_cfg(files, "data.max_len_ratio=0"))  # keep short/long pairs
    assert data.stats["splits"]["train"]["read"] == 400
    assert data.stats["splits"]["train"]["drops"]["empty"] == 1
    _assert_aligned(data, _pairs(src, tgt), _pairs(src[:1], tgt[:1]))
    kept = dict(zip(data.train_text["src"], data.train_text["tgt"]))
    assert kept["Aman \u2028 runs in a park ."] == clean_text(tgt[1])
    assert clean_text(src[2]) in kept and kept[clean_text(src[2])] == "Deux chiens !"
    for line in data.train_text["src"] + data.train_text["tgt"]:
        assert not any(c in line for c in "\x00\x07\x1b\u200b\u2060\u00ad\ufeff")


def test_invalid_utf8_in_replace_mode_is_counted_and_reported(corpus, tiny_parallel):
    d, write = corpus
    raw = "".join(x + "\n" for x in d["train_src"]).encode().replace(b"A ", b"\xff ", 3)
    files = _files(tiny_parallel, train_src=write("bad.en", raw=raw))
    data = prepare(_cfg(files, "data.on_bad_utf8=replace"))
    assert data.stats["bad_utf8_lines"] == 3
    assert "lines with invalid UTF-8 replaced: 3" in data.summary()
    assert data.stats["splits"]["train"]["read"] == 400
    assert sum("\ufffd" in s for s in data.train_text["src"]) <= 3


def test_tsv_with_crlf_and_extra_columns_keeps_pairs(corpus, tiny_parallel):
    d, write = corpus
    rows = [f"{s}\t{t}\tCC-BY #{i}" for i, (s, t) in enumerate(zip(d["train_src"], d["train_tgt"]))]
    files = {"train_tsv": write("x.tsv", rows, nl="\r\n"), **_files(tiny_parallel)}
    del files["train_src"], files["train_tgt"]
    tsv = prepare(_cfg(files))
    assert tsv.train_text == prepare(_cfg(_files(tiny_parallel))).train_text


def test_drop_counts_add_up(corpus, tiny_parallel):
    """Read = kept + every counted drop, whatever the damage."""
    d, write = corpus
    src = list(d["train_src"])
    src[3], src[4], src[5] = "", " \u200b ", "z" * 5000
    data = prepare(_cfg(_files(tiny_parallel, train_src=write("mixed.en", src))))
    st = data.stats["splits"]["train"]
    assert st["read"] == len(data.splits["train"]) + sum(st["drops"].values())
    assert Counter(st["drops"])["empty"] == 2


def test_empty_validation_split_is_refused_before_training(tiny_parallel, tmp_path, monkeypatch):
    """E.g. data=tatoeba_en_fr data.held_out.valid_size=0 (local files are refused earlier, above)."""
    from nmt.data.prepare import EncodedSplit
    from nmt.train import seq2seq_task
    from nmt.train.run import train

    def without_val(cfg):
        data = prepare(cfg)
        data.splits["val"] = EncodedSplit("val", [], [], [], [])
        return data

    monkeypatch.setattr(seq2seq_task, "prepare", without_val)  # where the task looks it up
    cfg = _cfg(_files(tiny_parallel), "model.emb_dim=8", "model.hidden_dim=8", "train.threads=1")
    with pytest.raises(DataError, match="the validation split 'val' of data=local is empty"):
        train(cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()
