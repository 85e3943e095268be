"""Untrusted checkpoints: code-running pickles are refused before they run; damaged files
(truncated anywhere, bytes flipped anywhere) are a clear error, never silently other weights.

tests/test_checkpoint.py already covers os.system in the model entry, a half-cut file and
junk bytes; this file adds other gadgets and places, the CLI and resume paths, and sweeps.
"""

from __future__ import annotations

import builtins
import pathlib
import random
import subprocess

import pytest
import torch

from nmt import inference
from nmt.errors import NMTError
from nmt.train import checkpoint as ckpt

MARKER_NAME = "PWNED"


class _Gadget:
    """Unpickling this calls ``fn(*args)``: what a malicious checkpoint would do."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _gadgets(marker: pathlib.Path) -> dict[str, object]:
    return {
        "exec": _Gadget(builtins.exec, f"open({str(marker)!r}, 'w').write('x')"),
        "eval": _Gadget(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Gadget(subprocess.call, ["touch", str(marker)]),
        "path_write": _Gadget(pathlib.Path.write_text, marker, "x"),
    }


def _good_payload() -> dict:
    torch.manual_seed(0)
    return {
        "format_version": 1,
        "config": {"model": {"cell": "gru"}},
        "model": {"w": torch.randn(64, 32), "b": torch.randn(32)},
        "src_tokenizer": {"kind": "sentencepiece", "model_proto": torch.arange(200).byte()},
        "step": 7,
    }


PLACES = ["top", "model", "tensor_dict", "tokenizer", "config"]


def _poison(payload: dict, place: str, gadget: object) -> object:
    if place == "top":
        return gadget
    if place == "model":
        payload["model"] = gadget
    elif place == "tensor_dict":
        payload["model"]["extra"] = gadget
    elif place == "tokenizer":
        payload["src_tokenizer"]["model_proto"] = gadget
    else:
        payload["config"]["model"]["cell"] = gadget
    return payload


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy_format"])
@pytest.mark.parametrize("place", PLACES)
def test_code_running_pickles_are_refused_and_never_run(tmp_path, place, legacy):
    marker = tmp_path / MARKER_NAME
    for name, gadget in _gadgets(marker).items():
        path = tmp_path / f"{name}.pt"
        torch.save(
            _poison(_good_payload(), place, gadget), path, _use_new_zipfile_serialization=not legacy
        )
        with pytest.raises(NMTError, match="refused for safety") as err:
            ckpt.load_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        assert not marker.exists(), f"{name} in {place} ran"


def test_translate_cli_refuses_a_code_running_checkpoint(tmp_path, capsys):
    from nmt.cli import translate

    marker = tmp_path / MARKER_NAME
    run = tmp_path / "run"
    run.mkdir()
    torch.save(_poison(_good_payload(), "model", _gadgets(marker)["exec"]), run / "best.pt")
    (tmp_path / "in.txt").write_text("A dog.\n")
    with pytest.raises(SystemExit) as exit_info:
        translate.main([str(run), "-i", str(tmp_path / "in.txt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "refused for safety" in err and "best.pt" in err
    assert not marker.exists()


def test_resume_refuses_a_code_running_last_checkpoint(tiny_parallel, tmp_path):
    from hydra import compose, initialize_config_dir

    from nmt.config import conf_dir, register_configs
    from nmt.train.run import train

    marker = tmp_path / MARKER_NAME
    out = tmp_path / "run"
    out.mkdir()
    torch.save(_poison(_good_payload(), "top", _gadgets(marker)["subprocess"]), out / "last.pt")
    register_configs()
    p = tiny_parallel
    overrides = ["data=local", "tokenizer.vocab_size=200", "model.emb_dim=8"]
    overrides += ["model.hidden_dim=8", "train.threads=1", "train.resume=true"]
    overrides += [
        f"data.local.{k}={p[k]}" for k in ("train_src", "train_tgt", "valid_src", "valid_tgt")
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with pytest.raises(NMTError, match=r"last\.pt contains objects .* refused for safety"):
        train(cfg, out_dir=out)
    assert not marker.exists()
    assert not (out / "train.lock").exists()  # the refused run let go of the folder


def _same(a: dict, b: dict) -> bool:
    return (
        a["step"] == b["step"]
        and a["config"] == b["config"]
        and set(a["model"]) == set(b["model"])
        and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        and torch.equal(a["src_tokenizer"]["model_proto"], b["src_tokenizer"]["model_proto"])
    )


def test_truncated_anywhere_is_a_clear_error(tmp_path):
    good = tmp_path / "good.pt"
    ckpt.save_checkpoint(good, _good_payload())
    data = good.read_bytes()
    cuts = sorted({0, 1, 4, 30, 64, len(data) - 1, len(data) - 22, len(data) - 100})
    cuts += random.Random(1).sample(range(len(data)), 30)
    for cut in cuts:
        bad = tmp_path / "cut.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(NMTError) as err:
            ckpt.load_checkpoint(bad)
        text = str(err.value)
        assert f"checkpoint {bad} ({cut} bytes) is incomplete or corrupt" in text, text
        assert "use another checkpoint" in text and "\n" not in text
        # Our words only: torch's and zipfile's texts (cut mid-sentence before) never leak.
        for torch_text in ("PytorchStreamReader", "central directory", "zip archive", "Errno"):
            assert torch_text not in text, text


def test_flipped_bytes_never_load_as_other_weights(tmp_path):
    """torch.load does not check the zip CRC-32s; load_checkpoint does, so a flipped byte in
    any record is refused (only flips in padding, which no reader uses, load unchanged)."""
    good = tmp_path / "good.pt"
    ckpt.save_checkpoint(good, _good_payload())
    reference = ckpt.load_checkpoint(good)
    data = good.read_bytes()
    rng = random.Random(2)
    refused = 0
    for pos in rng.sample(range(len(data)), 60):
        raw = bytearray(data)
        raw[pos] ^= 1 << rng.randrange(8)
        bad = tmp_path / "flip.pt"
        bad.write_bytes(bytes(raw))
        try:
            loaded = ckpt.load_checkpoint(bad)
        except NMTError as err:
            assert "flip.pt" in str(err) and "\n" not in str(err)
            refused += 1
            continue
        assert _same(loaded, reference), f"byte {pos} changed the content silently"
    assert refused >= 40  # most bytes are data: their flips must be caught


def test_flip_inside_the_weights_names_the_record(tmp_path):
    good = tmp_path / "good.pt"
    ckpt.save_checkpoint(good, _good_payload())
    data = bytearray(good.read_bytes())
    torch.manual_seed(0)
    weights = torch.randn(64, 32).numpy().tobytes()
    at = bytes(data).index(weights[:64]) + 100
    data[at] ^= 0x10
    (tmp_path / "w.pt").write_bytes(bytes(data))
    with pytest.raises(NMTError, match=r"w\.pt is corrupt \(checksum mismatch in .*data/"):
        ckpt.load_checkpoint(tmp_path / "w.pt")


def test_malformed_checkpoints_for_translation_are_clear(tmp_path):
    """Plain-data files that are not usable checkpoints: one NMTError each, no traceback."""
    payload = _good_payload()
    cases = {
        "format_version_text": {**payload, "format_version": "1"},
        "model_not_a_dict": {**payload, "model": [1, 2]},
        "no_config": {k: v for k, v in payload.items() if k != "config"},
        "config_of_a_newer_nmt": {**payload, "config": {"model": {"quantum": True}}},
        "config_wrong_type": {**payload, "config": {"model": {"hidden_dim": "big"}}},
        "tokenizer_damaged": {
            **payload,
            "config": {},
            "src_tokenizer": {"kind": "sentencepiece", "model_proto": torch.zeros(9).byte()},
        },
    }
    expected = {
        "format_version_text": "is not an nmt checkpoint",
        "model_not_a_dict": "is not an nmt checkpoint",
        "no_config": "has a config this nmt cannot read (no 'config' entry)",
        "config_of_a_newer_nmt": "has a config this nmt cannot read (Key 'quantum'",
        "config_wrong_type": "has a config this nmt cannot read (Value 'big'",
        "tokenizer_damaged": "holds a damaged sentencepiece tokenizer",
    }
    for name, data in cases.items():
        ckpt.save_checkpoint(tmp_path / f"{name}.pt", data)
        with pytest.raises(NMTError) as err:
            inference.load_for_inference(tmp_path / f"{name}.pt")
        assert expected[name] in str(err.value) and f"{name}.pt" in str(err.value), name
