"""Every recipe end to end through its real script (prepare -> train -> evaluate), shrunk:
a tiny model, a few steps, a few hundred real pairs from the mirror. A recipe whose
config, script or command-line glue breaks fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)
TINY = [
    "model.emb_dim=16",
    "model.hidden_dim=32",
    "train.max_steps=3",
    "train.threads=1",
    "train.log_every=1",
]
TINY_NMT = [
    *TINY,
    "data.train_limit=300",
    "tokenizer.vocab_size=300",
    "tokenizer.input_sentence_size=3000",
    "train.max_tokens=800",
    "train.valid_max_sentences=8",
    "train.max_minutes=0",
    "decode.beam_size=2",
    "decode.max_len_a=0.0",
    "decode.max_len_b=6",
]


def run_script(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "BIN": BIN, "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run(
        ["bash", script, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize(
    "recipe,splits",
    [
        ("quickstart", ["test_2016_flickr"]),
        ("multi30k_en_fr", ["test_2017_mscoco"]),
        ("tatoeba_en_fr", ["test"]),
    ],
)
def test_translation_recipe_end_to_end(recipe, splits, shared_data, tmp_path):
    run = tmp_path / "run"
    script = "recipes/quickstart/run.sh" if recipe == "quickstart" else "recipes/run.sh"
    args = TINY_NMT if recipe == "quickstart" else [recipe, *TINY_NMT]
    if recipe == "tatoeba_en_fr":
        args = [*args, "data.held_out.valid_size=200", "data.held_out.test_size=300"]
    proc = run_script(
        script,
        *args,
        env={
            "NMT_DATA_MIRROR": str(shared_data),
            "RUN": str(run),
            "SPLITS": " ".join(splits),
            "EXAMPLES": "2",
        },
    )
    assert (run / "best.pt").is_file() and (run / "metrics.jsonl").is_file()
    results = json.loads((run / "eval" / "results.json").read_text())
    assert list(results["splits"]) == splits
    for split in splits:
        scores = results["splits"][split]
        assert 0.0 <= scores["bleu"] <= 100.0 and "case:mixed" in scores["bleu_signature"]
        assert "bleu_lc_tok" in scores
        hyps = (run / "eval" / f"{split}.hyp").read_text().splitlines()
        refs = (run / "eval" / f"{split}.ref").read_text().splitlines()
        assert len(hyps) == len(refs) == scores["n_sentences"] > 0
    assert proc.stdout.count("  hyp: ") == 2 * len(splits)  # the printed examples
    assert f"recipe {recipe}:" in proc.stdout


def test_shakespeare_recipe_end_to_end(shared_data, tmp_path):
    run = tmp_path / "run"
    proc = run_script(
        "recipes/shakespeare_char/run.sh",
        *TINY,
        "train.char_lm.bptt_len=32",
        "train.char_lm.batch_size=4",
        "train.valid_every=0",
        env={"NMT_DATA_MIRROR": str(shared_data), "RUN": str(run), "CHARS": "80"},
    )
    assert (run / "best.pt").is_file() or (run / "last.pt").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in metrics if m.get("split") == "valid"]
    assert valid and valid[-1]["bits_per_char"] == pytest.approx(
        valid[-1]["loss"] / 0.6931, rel=1e-3
    )
    assert "sample" in proc.stdout  # the training summary names its sample file
    from nmt.cli.generate import generate, parse_args

    text = generate(parse_args([str(run), "--prompt", "ROMEO:", "--chars", "50", "--seed", "3"]))
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 50
    assert text == generate(
        parse_args([str(run), "--prompt", "ROMEO:", "--chars", "50", "--seed", "3"])
    )


def test_embeddings_study_end_to_end(shared_data, tmp_path):
    """The study script, shrunk: two arms at its smallest size (the real wheels from the
    mirror), a record per run, then the table and the plot."""
    out = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, "recipes/multi30k_en_fr/embeddings_study.py", "--out", str(out)]
        + ["--sizes", "1000", "--seeds", "1", "--only", "random", "frozen"]
        + ["--table", str(tmp_path / "table.md"), "--plot", str(tmp_path / "plot.png")]
        + [o for o in TINY_NMT if not o.startswith("train.max_minutes")],
        cwd=REPO,
        env={**os.environ, "NMT_DATA_MIRROR": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/study.json")}
    assert set(records) == {"1000-random-s1", "1000-frozen-s1"}
    frozen = records["1000-frozen-s1"]
    assert set(frozen["bleu"]) == {"test_2016_flickr", "test_2017_flickr", "test_2017_mscoco"}
    assert frozen["coverage"]["src"]["tokens"] > 0.5 and frozen["coverage"]["tgt"]["types"] > 0.5
    assert "embeddings=pretrained_frozen" in frozen["command"]
    table = (tmp_path / "table.md").read_text().splitlines()
    assert [row.split("|")[2].strip() for row in table[2:]] == ["random", "frozen"]
    assert (tmp_path / "plot.png").stat().st_size > 10_000
