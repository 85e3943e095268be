"""Every recipe end to end through its real script (prepare -> train -> evaluate), shrunk:
a tiny model, a few steps, a few hundred real pairs from the mirror. A recipe whose
config, script or command-line glue breaks fails here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_gz

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


def test_how_far_scores_every_kept_checkpoint(shared_data, tmp_path, monkeypatch, capsys):
    """recipes/multi30k_en_fr/how_far.py on a tiny Multi30k run that kept a checkpoint per
    validation: a curve row per checkpoint with its training minutes, validation BLEU and
    test BLEU, the gap to the goal, the plot; a second call reuses the scores."""
    run = tmp_path / "run"
    overrides = [o for o in TINY_NMT if not o.startswith("train.max_steps")]
    recipe = ["--config-dir", "recipes/multi30k_en_fr", "--config-name", "multi30k_en_fr"]
    subprocess.run(
        [f"{BIN}/nmt-train", *recipe, *overrides, "embeddings=random", "train.max_steps=4"]
        + ["train.valid_every=2", "train.keep_last=10", "data.test_splits=[test_2017_mscoco]"]
        + [f"hydra.run.dir={run}"],
        cwd=REPO,
        env={**os.environ, "NMT_DATA_MIRROR": str(shared_data), "OMP_NUM_THREADS": "1"},
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert sorted(p.name for p in run.glob("step_*.pt")) == ["step_00000002.pt", "step_00000004.pt"]

    spec = importlib.util.spec_from_file_location(
        "how_far", REPO / "recipes/multi30k_en_fr/how_far.py"
    )
    how_far = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(how_far)
    monkeypatch.setenv("NMT_DATA_MIRROR", str(shared_data))
    table, plot = tmp_path / "how_far.md", tmp_path / "how_far.png"
    assert how_far.main([str(run), "--table", str(table), "--plot", str(plot)]) == 0
    assert capsys.readouterr().out.count("[how-far] decoding") == 2
    record = json.loads((run / "curve" / "curve.json").read_text())
    rows = record["curve"]
    assert [r["step"] for r in rows] == [2, 4]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = {m["step"]: m["bleu"] for m in metrics if m.get("split") == "valid"}
    assert [r["valid_bleu"] for r in rows] == [valid[2], valid[4]]
    assert 0 <= rows[0]["minutes"] <= rows[1]["minutes"] < 5
    for r in rows:
        scored = json.loads((run / "curve" / f"step_{r['step']:08d}" / "results.json").read_text())
        assert r["test_bleu"] == {"test_2017_mscoco": scored["splits"]["test_2017_mscoco"]["bleu"]}
    (gap,) = [line for line in table.read_text().splitlines() if line.startswith("| gap at")]
    assert gap.split("|")[-2].strip() == f"{rows[-1]['test_bleu']['test_2017_mscoco'] - 54.7:+.2f}"
    assert plot.stat().st_size > 10_000
    # The words: the mscoco sources with a word the 300 training pairs lack, counted here again.
    seen = {
        w
        for line in read_gz(shared_data / "multi30k" / "train.en.gz", 300)
        for w in how_far.words(line)
    }
    mscoco = read_gz(shared_data / "multi30k" / "test_2017_mscoco.en.gz")
    unseen = sum(any(w not in seen for w in how_far.words(s)) for s in mscoco)
    (coverage,) = record["coverage"]
    assert coverage["unseen"]["sentences"] == unseen and 0 < unseen < len(mscoco)
    assert coverage["all_seen"]["sentences"] == len(mscoco) - unseen
    shares = [coverage[f"tokens_seen_under_{k}"] for k in (1, 5, 100)]
    assert 0 < shares[0] <= shares[1] <= shares[2] < 1

    assert how_far.main([str(run), "--every", "2", "--plot", str(tmp_path / "again.png")]) == 0
    assert "[how-far] decoding" not in capsys.readouterr().out  # the scores are reused
    again = json.loads((run / "curve" / "curve.json").read_text())["curve"]
    assert [r["step"] for r in again] == [4]

    for p in run.glob("step_*.pt"):
        p.unlink()
    with pytest.raises(SystemExit) as missing:
        how_far.main([str(run)])
    assert missing.value.code == 2 and "train.keep_last=60" in capsys.readouterr().err
