"""Bad translate input: clear one-line errors, otherwise one output line per input line, in order.

Everything runs in this process through ``nmt.cli.translate.main`` (what ``nmt-translate``
calls) on a tiny random-weight checkpoint.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, one_line_error, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from nmt.config import TokenizerConfig
from nmt.data.charvocab import CharVocab
from nmt.data.tokenizer import Tokenizer, train_model
from nmt.train.checkpoint import save_checkpoint

SENTINELS = ["A man in an orange hat.", "Two dogs run on the grass.", "A girl is eating."]


@pytest.fixture(scope="module")
def ckpts(tiny_lines, tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    lines, tok = tiny_lines, tiny_tokenizer
    # Another tokenizer with the very same number of pieces (other text, same size).
    other = Tokenizer(train_model(lines[::-1][:500], TokenizerConfig(vocab_size=120)))
    chars = CharVocab.build("".join(lines[:50]))
    return {
        "good": make_checkpoint(folder / "good.pt", tok, tok),
        "same_size_other_tok": make_checkpoint(folder / "other.pt", other, other, seed=1),
        "char_lm": make_checkpoint(folder / "lm.pt", chars, chars, arch="char_lm"),
    }


def _translate(args: list[str], capsys) -> tuple[int, str, str]:
    from nmt.cli import translate

    return run_main(translate, args, capsys)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def _read(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1]


def _alone(ckpt: Path, lines: list[str], tmp: Path, capsys) -> list[str]:
    """Each line translated on its own (no batching can reorder anything)."""
    out = []
    for line in lines:
        code, _, err = _translate(
            [str(ckpt), "-i", str(_write(tmp / "one.txt", [line])), "-o", str(tmp / "o.txt")],
            capsys,
        )
        assert code == 0, err
        out += _read(tmp / "o.txt")
    return out


def _one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    one_line_error(code, err, *needles, out=out)


def test_gigantic_line_is_truncated_with_a_warning_and_keeps_its_place(ckpts, tmp_path, capsys):
    words = "a man walks down the street with a dog "
    giant = words * (1_000_000 // len(words))  # about 1 MB on one line
    lines = [SENTINELS[0], "", giant, SENTINELS[1], SENTINELS[2]]
    inp, out = _write(tmp_path / "in.txt", lines), tmp_path / "out.txt"
    code, _, err = _translate([str(ckpts["good"]), "-i", str(inp), "-o", str(out)], capsys)
    assert code == 0, err
    assert "input line 3 has" in err and "only the first 250 are translated" in err
    got = _read(out)
    assert len(got) == 5 and got[1] == ""
    assert [got[0], got[3], got[4]] == _alone(ckpts["good"], SENTINELS, tmp_path, capsys)


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("utf16.txt", "A man.\nA dog.\n".encode("utf-16"), "looks binary"),
        ("text.gz", gzip.compress(b"A man.\n", mtime=0), "looks binary"),
        ("noise.bin", bytes(random.Random(0).randrange(1, 256) for _ in range(4096)), "UTF-8"),
        ("latin1.txt", "A man.\nUn caf\u00e9.\n".encode("latin-1"), "not UTF-8 text (line 2)"),
    ],
    ids=["utf16", "gzip", "noise", "latin1"],
)
def test_binary_or_non_utf8_input_is_one_line(ckpts, tmp_path, capsys, name, data, needle):
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out.txt"
    code, stdout, err = _translate(
        [str(ckpts["good"]), "-i", str(tmp_path / name), "-o", str(out)], capsys
    )
    _one_line_error(code, stdout, err, name, needle)
    assert not out.exists()  # nothing half-written


def test_missing_input_or_a_folder_is_one_line(ckpts, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    _one_line_error(*_translate([str(ckpts["good"]), "-i", str(missing)], capsys), "nope.txt")
    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_error(*_translate([str(ckpts["good"]), "-i", str(folder)], capsys), "folder")


def test_checkpoints_of_other_tokenizers_are_refused(ckpts, tmp_path, capsys):
    inp = str(_write(tmp_path / "in.txt", SENTINELS))
    # A character-LM checkpoint (character vocabulary) is not a translation model.
    _one_line_error(*_translate([str(ckpts["char_lm"]), "-i", inp], capsys), "char_lm")
    # An ensemble member whose tokenizer has the same size but other pieces.
    args = [str(ckpts["good"]), "-i", inp, "--ensemble", str(ckpts["same_size_other_tok"])]
    _one_line_error(*_translate(args, capsys), "other vocabularies")
    # Weights of one tokenizer stored with another tokenizer of another size.
    payload = torch.load(ckpts["good"], weights_only=True)
    small = Tokenizer(train_model(SENTINELS * 20, TokenizerConfig(vocab_size=25)))
    payload["src_tokenizer"] = small.state_dict()
    save_checkpoint(tmp_path / "swapped.pt", payload)
    _one_line_error(
        *_translate([str(tmp_path / "swapped.pt"), "-i", inp], capsys), "does not match"
    )
    # A tokenizer kind this nmt does not know.
    payload["src_tokenizer"] = {"kind": "subword-nmt", "codes": "a b"}
    save_checkpoint(tmp_path / "foreign.pt", payload)
    _one_line_error(*_translate([str(tmp_path / "foreign.pt"), "-i", inp], capsys), "unknown kind")


@pytest.mark.parametrize(
    ("option", "needle"),
    [(["--beam", "0"], "--beam must be at least 1"), (["--top-p", "2"], "decode.top_p=2.0")],
)
def test_impossible_search_options_are_one_line(ckpts, tmp_path, capsys, option, needle):
    inp = str(_write(tmp_path / "in.txt", SENTINELS))
    _one_line_error(*_translate([str(ckpts["good"]), "-i", inp, *option], capsys), needle)


# Any Unicode but surrogates (not encodable), the line break itself and NUL (binary).
LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"),
    max_size=40,
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


@pytest.fixture(scope="module")
def alone(ckpts) -> list[str]:
    """The sentinels translated one by one, by the Translator the CLI uses."""
    from nmt.inference import load_for_inference
    from nmt.search.translator import Translator

    model, src_tok, tgt_tok, cfg = load_for_inference(ckpts["good"])
    translator = Translator(model, src_tok, tgt_tok, OmegaConf.to_object(cfg.decode))
    return [translator.translate([line])[0] for line in SENTINELS]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(LINE, min_size=1, max_size=8), where=st.integers(0, 8))
def test_random_unicode_lines_give_one_output_line_each_in_order(
    ckpts, work, alone, capsys, lines, where
):
    at = min(where, len(lines))
    lines = lines[:at] + [SENTINELS[0]] + lines[at:] + [SENTINELS[1]]
    inp, out = _write(work / "in.txt", lines), work / "out.txt"
    code, _, err = _translate(
        [str(ckpts["good"]), "-i", str(inp), "-o", str(out), "--quiet"], capsys
    )
    assert code == 0, err
    got = _read(out)
    assert len(got) == len(lines)
    assert got[at] == alone[0] and got[-1] == alone[1]  # order kept around them
    for line, hyp in zip(lines, got):
        if not line.strip():
            assert hyp == ""
