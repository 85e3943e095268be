"""nmt-score agrees with the sacrebleu command line on real Multi30k references."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from conftest import read_gz

BIN = Path(sys.executable).parent


def _perturb(lines: list[str], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for line in lines:
        words = line.split()
        words = [w for w in words if rng.random() > 0.15] or words[:1]
        if len(words) > 3 and rng.random() < 0.3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        out.append(" ".join(words))
    return out


def test_nmt_score_matches_sacrebleu_cli(shared_data, tmp_path):
    refs = read_gz(shared_data / "multi30k" / "test_2016_flickr.fr.gz")
    assert len(refs) == 1000
    ref, hyp = tmp_path / "ref.fr", tmp_path / "hyp.fr"
    ref.write_text("\n".join(refs) + "\n", encoding="utf-8")
    hyp.write_text("\n".join(_perturb(refs)) + "\n", encoding="utf-8")
    for extra in ([], ["--lowercase", "--tokenize", "intl"]):
        ours = subprocess.run(
            [sys.executable, "-m", "nmt", "score", "-r", str(ref), str(hyp), "--json", *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        mine = json.loads(ours.stdout)
        theirs = subprocess.run(
            [
                str(BIN / "sacrebleu"),
                str(ref),
                "-i",
                str(hyp),
                "-m",
                "bleu",
                "chrf",
                "ter",
                "-w",
                "4",
                "--format",
                "json",
                *extra,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        ref_scores = {d["name"]: d for d in json.loads(theirs.stdout)}
        assert 20 < mine["bleu"] < 90
        assert abs(mine["bleu"] - ref_scores["BLEU"]["score"]) < 1e-3
        assert abs(mine["chrf"] - ref_scores["chrF2"]["score"]) < 1e-3
        assert abs(mine["ter"] - ref_scores["TER"]["score"]) < 1e-3
        assert mine["bleu_signature"] == ref_scores["BLEU"]["signature"]
        assert mine["chrf_signature"] == ref_scores["chrF2"]["signature"]
        assert mine["ter_signature"] == ref_scores["TER"]["signature"]


def test_nmt_score_stdin_and_errors(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("a b c d\ne f g h\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "nmt", "score", "-r", str(ref), "-m", "bleu", "--json"],
        input="a b c d\ne f g h\n",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["bleu"] == 100.0
    bad = subprocess.run(
        [sys.executable, "-m", "nmt", "score", "-r", str(tmp_path / "missing.txt")],
        input="x\n",
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "missing.txt" in bad.stderr
    short = subprocess.run(
        [sys.executable, "-m", "nmt", "score", "-r", str(ref)],
        input="only one line\n",
        capture_output=True,
        text=True,
    )
    assert short.returncode == 2 and "has 2 lines but hypothesis file stdin has 1" in short.stderr
