"""Readers (plain/gzip/TSV, CRLF, bad UTF-8, unequal files) and cleaning."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from nmt.data.cleaning import clean_pairs, clean_text, length_filter, normalize
from nmt.data.readers import read_lines, read_parallel, read_tsv
from nmt.errors import DataError


def test_plain_and_gzip_read_the_same(tmp_path):
    text = "Un chat.\nDeux chiens\u2028 ensemble.\n\n"  # U+2028 must not split a line
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    # A .txt name on gzip bytes: the magic bytes decide, not the suffix.
    (tmp_path / "b.txt").write_bytes(gzip.compress(text.encode("utf-8")))
    lines = read_lines(tmp_path / "a.txt")
    assert lines == ["Un chat.", "Deux chiens\u2028 ensemble.", ""]
    assert read_lines(tmp_path / "b.txt") == lines


def test_crlf_bom_and_missing_final_newline(tmp_path):
    (tmp_path / "w.txt").write_bytes("\ufeffone\r\ntwo\r\nthree".encode())
    assert read_lines(tmp_path / "w.txt") == ["one", "two", "three"]


def test_unequal_parallel_files_name_both(tmp_path):
    (tmp_path / "x.en").write_text("a\nb\nc\n")
    (tmp_path / "x.fr").write_text("a\nb\n")
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path / "x.en", tmp_path / "x.fr")
    msg = str(err.value)
    assert "x.en has 3 lines" in msg and "x.fr has 2" in msg


def test_bad_utf8_names_the_line_and_replace_mode_counts(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\ncaf\xe9 latin-1\nok\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"bad\.txt line 3 is not valid UTF-8.*on_bad_utf8=replace"):
        read_lines(path)
    stats: Counter = Counter()
    lines = read_lines(path, on_bad_utf8="replace", stats=stats)
    assert lines[2] == "caf\ufffd latin-1" and lines[3] == "ok" and len(lines) == 5
    assert stats["bad_utf8_lines"] == 2
    with pytest.raises(DataError, match="on_bad_utf8"):
        read_lines(path, on_bad_utf8="ignore")


def test_bad_gzip_line_number(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"a\nb\n\xc3\n"))
    with pytest.raises(DataError, match="line 3"):
        read_lines(path)


def test_tsv_and_tsv_without_tab(tmp_path):
    (tmp_path / "ok.tsv").write_bytes(b"Go.\tVa !\r\nRun!\tCours\xe2\x80\xaf!\tCC-BY attribution\n")
    src, tgt = read_tsv(tmp_path / "ok.tsv")
    assert src == ["Go.", "Run!"] and tgt == ["Va !", "Cours\u202f!"]
    (tmp_path / "bad.tsv").write_text("a\tb\nno tab here\n")
    with pytest.raises(DataError, match=r"bad\.tsv line 2 has no tab"):
        read_tsv(tmp_path / "bad.tsv")


def test_missing_file_and_truncated_gzip(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_lines(tmp_path / "nope.txt")
    (tmp_path / "t.gz").write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        read_lines(tmp_path / "t.gz")


def test_clean_text():
    decomposed = "cafe\u0301"  # e + combining acute -> NFC é
    assert clean_text(f"  {decomposed}\u200b  au\tlait\x07 ") == "caf\u00e9 au lait"
    assert clean_text("Cours\u202f!") == "Cours\u202f!"  # typographic spaces stay
    assert normalize(f" {decomposed}  x ") == "caf\u00e9  x"  # evaluation text: NFC + strip only


def test_clean_pairs_and_length_filter_count_every_drop():
    drops: Counter = Counter()
    src, tgt = clean_pairs(["a b", " ", "c", "\u200b"], ["x", "y", "", "z"], drops)
    assert (src, tgt) == (["a b"], ["x"]) and drops == {"empty": 3}
    keep = length_filter([3, 200, 2, 10, 5], [3, 4, 20, 3, 15], 100, 3.0, drops)
    assert keep == [0, 4]  # 5 vs 15 is exactly ratio 3: kept
    assert drops == {"empty": 3, "too_long": 1, "ratio": 2}
    assert length_filter([200, 1], [1, 50], 0, 0, Counter()) == [0, 1]  # 0 disables both
