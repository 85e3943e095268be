"""nmt-translate's everyday tools: line-by-line streaming, word alignments, every decode flag."""

from __future__ import annotations

import dataclasses
import io
import os
import selectors
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_checkpoint, one_line_error, run_main
from omegaconf import OmegaConf

from nmt.cli import decode_flags, streaming, translate
from nmt.config import DecodeConfig
from nmt.errors import ConfigError
from nmt.inference import load_for_inference
from nmt.search.alignment import pharaoh, surface_pieces, word_alignment
from nmt.search.translator import Translator

LINES = ["A man in an orange hat.", "", "Two dogs run on the grass near a white fence."]


@pytest.fixture(scope="module")
def ckpt(tiny_tokenizer, tmp_path_factory) -> Path:
    """A random-weight GRU with Bahdanau attention (beam 3, outputs of at most ~6 pieces)."""
    return make_checkpoint(tmp_path_factory.mktemp("tools") / "best.pt", *[tiny_tokenizer] * 2)


def _translator(ckpt: Path, **changes) -> Translator:
    model, src_tok, tgt_tok, cfg = load_for_inference(ckpt)
    dec = dataclasses.replace(OmegaConf.to_object(cfg.decode), **changes)
    return Translator(model, src_tok, tgt_tok, dec)


class _LineByLineStdin:
    """stdin whose ``buffer.readline`` notes how many rows stdout held at each read."""

    def __init__(self, lines: list[str], stdout: io.StringIO) -> None:
        self.buffer = self
        self._lines = [(line + "\n").encode() for line in lines]
        self._stdout = stdout
        self.rows_seen: list[int] = []

    def readline(self) -> bytes:
        self.rows_seen.append(len(self._stdout.getvalue().splitlines()))
        return self._lines.pop(0) if self._lines else b""

    def isatty(self) -> bool:
        return False


def _stream(args: list[str], lines: list[str], monkeypatch) -> tuple[list[str], list[int]]:
    """``main(args)`` reading ``lines`` one at a time: (stdout rows, rows seen at each read)."""
    stdout = io.StringIO()
    stdin = _LineByLineStdin(lines, stdout)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stdin", stdin)
    translate.main(args)
    return stdout.getvalue().splitlines(), stdin.rows_seen


def test_a_pipe_gets_each_answer_before_it_writes_the_next_line(ckpt):
    """The real command in a subprocess: write one line, read its answer (bounded wait), then
    the next; the model is loaded once, before the first line."""
    # Python buffers a pipe's output unless told not to: only the command's flushes count here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", "translate", str(ckpt), "--interactive", "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    answers = []
    try:
        for k, line in enumerate(LINES):
            proc.stdin.write((line + "\n").encode())
            proc.stdin.flush()
            # The first answer waits for torch's import and the model; later ones only decode.
            assert selector.select(timeout=120 if k == 0 else 30), f"no answer to line {k + 1}"
            answers.append(proc.stdout.readline().decode().rstrip("\n"))
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0 and proc.stdout.read() == b""
    finally:
        proc.kill()
        proc.wait()
        selector.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert answers == _translator(ckpt).translate(LINES)


def test_streaming_writes_nbest_and_alignments_line_by_line_as_batch_mode_does(
    ckpt, tmp_path, capsys, monkeypatch
):
    args = [str(ckpt), "--quiet", "--n-best", "2", "--alignments", "-"]
    rows, rows_seen = _stream([*args, "--interactive"], LINES, monkeypatch)
    assert rows_seen == [0, 2, 4, 6]  # each line's 2 rows were out before the next read
    inp = tmp_path / "in.en"
    inp.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    monkeypatch.undo()
    code, batch, err = run_main(translate, [*args, "-i", str(inp)], capsys)
    assert code == 0, err
    fields = [row.split(" ||| ") for row in rows]
    assert [[f[0], f[1], f[3]] for f in fields] == [
        [f[0], f[1], f[3]] for f in (row.split(" ||| ") for row in batch.splitlines())
    ]
    assert [f[0] for f in fields] == ["1", "1", "2", "2", "3", "3"]
    assert fields[2] == ["2", "", "0.0000", ""]  # an empty line: empty text, no links


def test_terminal_stdin_streams_without_the_flag(ckpt, monkeypatch, capsys):
    monkeypatch.setattr(translate, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(streaming, "stdin_is_terminal", lambda: True)
    rows, rows_seen = _stream([str(ckpt)], LINES, monkeypatch)
    assert rows_seen == [0, 1, 2, 3] and rows == _translator(ckpt).translate(LINES)
    err = capsys.readouterr().err
    assert "type a sentence" in err and "translated 3 lines" in err


def test_streaming_names_the_truncated_line(ckpt, monkeypatch, capsys):
    _stream([str(ckpt), "--interactive", "--max-src-len", "3"], LINES, monkeypatch)
    warnings = [w for w in capsys.readouterr().err.splitlines() if "pieces; only" in w]
    assert [w.split(" has ")[0] for w in warnings] == [
        "nmt: warning: input line 1",
        "nmt: warning: input line 3",
    ]


def test_alignment_file_links_every_output_word_to_one_source_word(
    ckpt, tmp_path, capsys, monkeypatch
):
    links_file, out = tmp_path / "links.txt", tmp_path / "out.fr"
    args = [str(ckpt), "--quiet", "-o", str(out), "--alignments", str(links_file)]
    code, _, err = run_main(translate, args, capsys, "\n".join(LINES) + "\n", monkeypatch)
    assert code == 0, err
    outputs = out.read_text(encoding="utf-8").splitlines()
    links = links_file.read_text(encoding="utf-8").splitlines()
    assert len(links) == len(outputs) == 3 and links[1] == ""
    translator = _translator(ckpt)
    for line, text, row in zip(LINES, outputs, links):
        pairs = [tuple(map(int, link.split("-"))) for link in row.split()]
        assert sorted(j for _, j in pairs) == list(range(len(text.split())))
        assert all(0 <= i < len(line.split()) for i, _ in pairs)
        best = translator.translate_nbest([line], return_attention=True)[0]
        if best:  # the CLI's links are word_alignment's on the Translator's attention
            source = surface_pieces(translator.src_tok, line)
            target = [translator.tgt_tok.id_to_piece(t) for t in best[0].tokens]
            assert row == pharaoh(word_alignment(source, target, best[0].attention))


def test_alignments_need_attention(tiny_tokenizer, tmp_path, capsys, monkeypatch):
    plain = make_checkpoint(tmp_path / "plain.pt", tiny_tokenizer, tiny_tokenizer, attention="none")
    code, out, err = run_main(
        translate, [str(plain), "--alignments", "-"], capsys, "A dog.\n", monkeypatch
    )
    one_line_error(code, err, "--alignments", "no attention", out=out)
    args = [str(plain), "--alignments", str(tmp_path / "plain.pt")]
    code, out, err = run_main(translate, args, capsys, "A dog.\n", monkeypatch)
    one_line_error(code, err, "--alignments", out=out)  # an input is no output


# DecodeConfig field -> (command line, value it must reach), each unlike the default.
FLAG_VALUES = {
    "beam_size": (["--beam", "7"], 7),
    "n_best": (["--n-best", "2"], 2),
    "max_tokens": (["--max-tokens", "123"], 123),
    "max_sentences": (["--max-sentences", "9"], 9),
    "workers": (["--workers", "2"], 2),
    "batch_threads": (["--batch-threads", "3"], 3),
    "length_penalty": (["--length-penalty", "0.3"], 0.3),
    "length_normalize": (["--length-normalize"], True),
    "coverage_penalty": (["--coverage-penalty", "0.2"], 0.2),
    "min_len": (["--min-len", "4"], 4),
    "max_len_a": (["--max-len-a", "2.5"], 2.5),
    "max_len_b": (["--max-len-b", "3"], 3),
    "no_repeat_ngram_size": (["--no-repeat-ngram-size", "3"], 3),
    "suppress_unk": (["--suppress-unk"], True),
    "temperature": (["--temperature", "0.7"], 0.7),
    "top_k": (["--top-k", "5"], 5),
    "top_p": (["--top-p", "0.9"], 0.9),
    "seed": (["--seed", "11"], 11),
    "shortlist": (["--shortlist", "50"], 50),
    "shortlist_frequent": (["--shortlist-frequent", "40"], 40),
}


def test_every_decode_field_has_a_flag_in_help_that_reaches_the_config(capsys):
    fields = {f.name for f in dataclasses.fields(DecodeConfig)}
    assert set(FLAG_VALUES) == set(decode_flags.DECODE_FLAGS) == fields - {"method"}
    with pytest.raises(SystemExit):
        translate.parse_args(["--help"])
    help_text = capsys.readouterr().out
    base = DecodeConfig()
    for key, (argv, value) in FLAG_VALUES.items():
        assert argv[0] in help_text, argv[0]
        assert getattr(base, key) != value, key
        cfg = decode_flags.decode_config(base, translate.parse_args(["x", "--quiet", *argv]))
        assert getattr(cfg, key) == value, key
        others = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in (key, "beam_size")}
        assert others == {k: v for k, v in dataclasses.asdict(base).items() if k in others}
    on = DecodeConfig(suppress_unk=True, length_normalize=True)
    off = translate.parse_args(["x", "--no-suppress-unk", "--no-length-normalize"])
    cfg = decode_flags.decode_config(on, off)
    assert not cfg.suppress_unk and not cfg.length_normalize
    assert decode_flags.decode_config(on, translate.parse_args(["x"])) == on  # unset: unchanged


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--min-len", "-1"], "--min-len -1: decode.min_len=-1 must not be negative"),
        (["--no-repeat-ngram-size", "-2"], "--no-repeat-ngram-size -2: "),
        (["--max-sentences", "-1"], "--batch-size -1: decode.max_sentences=-1"),
        (["--coverage-penalty", "-0.5"], "--coverage-penalty -0.5: "),
        (["--coverage-penalty", "nan"], "decode.coverage_penalty=nan must be a finite number"),
        (["--length-penalty", "inf"], "--length-penalty inf: "),
        (["--sample", "--temperature", "nan"], "--temperature nan: decode.temperature=nan"),
    ],
)
def test_a_bad_decode_value_is_one_line_naming_its_flag(argv, needle):
    with pytest.raises(ConfigError) as err:
        decode_flags.decode_config(DecodeConfig(), translate.parse_args(["x", *argv]))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_bad_decode_value_on_the_command_line(ckpt, capsys, monkeypatch):
    args = [str(ckpt), "--min-len", "-1"]
    code, out, err = run_main(translate, args, capsys, "A dog.\n", monkeypatch)
    one_line_error(code, err, "--min-len -1", out=out)


def test_stdin_is_no_terminal_under_a_test_runner_or_when_closed(monkeypatch):
    assert not streaming.stdin_is_terminal()
    monkeypatch.setattr(sys, "stdin", None)
    assert not streaming.stdin_is_terminal()
