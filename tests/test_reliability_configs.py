"""Bad configs fail at start: one ConfigError naming the key, one line from the CLI.

"At start" means before any data is read or any file is written: the checks below run
with ``data=local`` and no files at all, and the run folder must not appear.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_cli_in_process
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.config import conf_dir, register_configs
from nmt.data.prepare import prepare
from nmt.errors import ConfigError
from nmt.train.run import train


def _cfg(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=["data=local", *overrides])


_BASE = []


def _quick_cfg(*overrides: str):
    """``_cfg`` for plain ``key=value`` overrides: merged onto one composed config (Hydra's
    composition costs ~0.2 s a call); group choices (``model=char_lm``) still compose."""
    if any("." not in o.split("=")[0] for o in overrides):
        return _cfg(*overrides)
    if not _BASE:
        _BASE.append(_cfg())
    return OmegaConf.merge(_BASE[0], OmegaConf.from_dotlist(list(overrides)))


def _train_cli(args: list[str], tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """``nmt-train`` in this process: (exit code, stderr)."""
    from nmt.cli.train import main

    argv = ["nmt-train", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    return run_cli_in_process(main, argv, monkeypatch, capsys)


# override(s) -> what the one-line message must say
IMPOSSIBLE = {
    "train.log_every=0": r"train\.log_every=0 must be at least 1",
    "train.decay_by_time=true": r"train\.decay_by_time=true needs train\.schedule=cosine",
    "train.max_tokens=0": r"train\.max_tokens or train\.max_sentences",
    "train.lr=-1": r"train\.lr=-1\.0 must be at least 0",
    "train.betas=[0.9]": r"train\.betas=\[0\.9\] must be two numbers",
    "train.label_smoothing=1.5": r"train\.label_smoothing=1\.5 must be in \[0, 1\)",
    "train.plateau_factor=2": r"train\.plateau_factor=2\.0 must be in \(0, 1\]",
    "train.threads=-2": r"train\.threads=-2",
    "train.valid_beam_size=0": r"train\.valid_beam_size=0 must be at least 1",
    "train.char_lm.bptt_len=0": r"train\.char_lm\.bptt_len=0 must be at least 1",
    "train.char_lm.batch_size=-1": r"train\.char_lm\.batch_size=-1 must be at least 1",
    # embeddings: checked with the rest (before: only after the data was prepared)
    "embeddings.src.init=pretrained": r"embeddings\.src\.init=pretrained needs embeddings\.src\.vectors",
    "model.share_embeddings=true,embeddings.src.init=word2vec": r"must be set the same way",
    "decode.beam_size=0": r"decode\.beam_size=0 must be at least 1",
    "decode.n_best=0": r"decode\.n_best=0 must be at least 1",
    "decode.top_p=2": r"decode\.top_p=2\.0 must be in \[0, 1\]",
    # nan/inf penalties would leave nothing to rank (training's validation decoding too)
    "decode.length_penalty=inf": r"decode\.length_penalty=inf must be a finite number",
    "decode.coverage_penalty=nan": r"decode\.coverage_penalty=nan must be a finite number >= 0",
    "decode.coverage_penalty=-0.5": r"decode\.coverage_penalty=-0\.5 must be a finite number",
    "model.layers=0": r"model\.layers=0 must be at least 1",
    "model.dropout=1.0": r"model\.dropout=1\.0 must be in \[0, 1\)",
    "model.hidden_dim=33": r"use an even model\.hidden_dim",
    "model.attention=none,model.input_feeding=true": r"model\.input_feeding=true .* needs attention",
    "model.share_embeddings=true,tokenizer.joint=false": r"share_embeddings=true needs one joint",
    "model.share_embeddings=true,tokenizer.restrict_vocab=true": r"tokenizer\.restrict_vocab=false",
    "model=char_lm,model.attention=bahdanau": r"char_lm has no source to attend to",
}


@pytest.mark.parametrize("overrides", list(IMPOSSIBLE))
def test_impossible_values_fail_before_anything_is_read(overrides, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=IMPOSSIBLE[overrides]) as err:
        train(_quick_cfg(*overrides.split(",")), out_dir=out)
    assert "\n" not in str(err.value)
    assert not out.exists()  # nothing prepared, no run folder, no lock


# Typos, wrong types and names outside a key's choices are refused by Hydra's typed schema
# (every choice key: tests/test_configs.py); the CLI shows one line.
COMPOSITION = {
    "model.cel=gru": "unknown config key 'model.cel'",
    "+train.warmup=3": "unknown config key 'train.warmup'",
    # keys grouped under their task or corpus (issue #17): the message names the new key
    "train.bptt_len=64": "unknown config key 'train.bptt_len': did you mean train.char_lm.bptt_len?",
    "data.train_src=a.en": "unknown config key 'data.train_src': did you mean data.local.train_src?",
    "+data.split_seed=3": "unknown config key 'data.split_seed': did you mean data.held_out.seed?",
    "train.lr=fast": "config key 'train.lr': Value 'fast'",
    "train.betas=3": "config key 'train.betas'",
    "model=lstmm": "model=lstmm is unknown: use one of char_lm, gru, lstm, luong, no_attention",
    "train.lr=(": "cannot parse the override 'train.lr=(': check its syntax",
    "train.precision=fp8": "train.precision='fp8' is unknown: use one of fp32, bf16, fp16",
    "train.device=tpu": "train.device='tpu' is unknown: use one of auto, cpu, cuda",
    # Encoder and decoder share model.cell, so an LSTM encoder state cannot meet a GRU
    # decoder; the bridge itself only knows none|linear.
    "model.bridge=lstm": "model.bridge='lstm' is unknown: use one of none, linear",
    "data.name=???": "config key 'data.name' has no value: set data.name=VALUE",
}


@pytest.mark.parametrize("override", list(COMPOSITION))
def test_cli_config_mistakes_are_one_line(override, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    code, err = _train_cli(["data=local", override], tmp_path, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nmt: error: ") and COMPOSITION[override] in lines[0]
    assert "HYDRA_FULL_ERROR" not in os.environ  # the switch is not left behind
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_impossible_value_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = _train_cli(["data=local", "decode.beam_size=0"], tmp_path, monkeypatch, capsys)
    assert code == 2 and err == "nmt: error: decode.beam_size=0 must be at least 1\n"
    assert not (tmp_path / "run" / "train.lock").exists()


def test_hydra_full_error_still_shows_the_full_report(tmp_path, monkeypatch, capsys):
    from hydra.errors import ConfigCompositionException

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException):
        _train_cli(["model.cel=gru"], tmp_path, monkeypatch, capsys)
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_vocab_size_larger_than_the_corpus_supports(tiny_parallel, model_type):
    files = [f"data.local.{key}={tiny_parallel[key]}" for key in ("train_src", "train_tgt")]
    files += [f"data.local.{key}={tiny_parallel[key]}" for key in ("valid_src", "valid_tgt")]
    cfg = _cfg(*files, f"tokenizer.model_type={model_type}", "tokenizer.vocab_size=60000")
    with pytest.raises(ConfigError) as err:
        prepare(cfg)
    message = str(err.value)
    assert message.startswith("tokenizer.vocab_size=60000 is more than this training text")
    most = int(message.split("at most ")[1].split()[0])
    assert 200 < most < 60000 and f"set tokenizer.vocab_size={most} or lower" in message
