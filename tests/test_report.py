"""nmt-report on real tiny runs (two 12-step trainings, about a second each) and on run
folders written by hand (a char LM, eval files with known BLEU)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, run_main
from test_train_loop import make_cfg

from nmt import inference
from nmt.__main__ import COMMANDS
from nmt.cli import report as cli
from nmt.report import Run, count_params, differing_settings, with_elapsed
from nmt.train.checkpoint import save_checkpoint
from nmt.train.metrics import read_metrics
from nmt.train.run import train

LRS = {"0": "1e-3", "1": "3e-3"}  # Hydra multirun names its runs 0, 1, ...


@pytest.fixture(scope="module")
def sweep(tiny_parallel, tmp_path_factory) -> Path:
    """A multirun-like folder: runs 0 and 1 differ in train.lr only; beside them Hydra's
    multirun.yaml and a folder that is no run."""
    parent = tmp_path_factory.mktemp("multirun")
    cache = tmp_path_factory.mktemp("report_cache")
    for name, lr in LRS.items():
        cfg = make_cfg(
            tiny_parallel,
            f"data.cache_dir={cache}",
            "train.max_steps=12",
            "train.valid_every=4",
            "train.log_every=4",
            f"train.lr={lr}",
        )
        train(cfg, out_dir=parent / name)
    (parent / "multirun.yaml").write_text("hydra: {}\n", encoding="utf-8")
    (parent / ".submitit").mkdir()
    return parent


def table_rows(text: str) -> dict[str, list[str]]:
    """The Markdown table's rows by run name: the header under ``"run"``."""
    lines = [x for x in text.splitlines() if x.startswith("| ")]
    cells = [[c.strip() for c in x.strip("|").split(" | ")] for x in lines if "---" not in x]
    return {row[0]: row for row in cells}


def valid_records(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "valid"]


def test_table_of_two_runs(sweep, capsys):
    runs = [str(sweep / name) for name in LRS]
    code, out, err = run_main(cli, runs, capsys)
    assert code == 0, err
    rows = table_rows(out)
    head = rows["run"]
    assert head[:7] == [
        "run", "settings", "params", "updates", "wall", "tok/s", "best val BLEU (step)",
    ]  # fmt: skip
    assert rows["0"][1] == "train.lr=0.001" and rows["1"][1] == "train.lr=0.003"
    for name in LRS:
        model = inference.load_for_inference(sweep / name)[0]
        assert rows[name][2] == f"{sum(p.numel() for p in model.parameters()):,}"
        assert rows[name][3] == "12"  # train.max_steps
        valid = valid_records(sweep / name)
        best = max(valid, key=lambda r: r["bleu"])  # the earliest of equals
        assert rows[name][6] == f"{best['bleu']:.2f} ({best['step']})"
    assert list(rows)[1:] == sorted(
        LRS, key=lambda n: -max(r["bleu"] for r in valid_records(sweep / n))
    )


def test_json_loss_and_sort(sweep, capsys):
    code, out, err = run_main(cli, [str(sweep), "--json", "--metric", "loss"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["run"] for r in rows] == sorted(
        LRS, key=lambda n: min(r["loss"] for r in valid_records(sweep / n))
    )
    for row in rows:
        records = read_metrics(sweep / row["run"] / "metrics.jsonl")
        valid = [r for r in records if r["split"] == "valid"]
        best = min(valid, key=lambda r: r["loss"])
        assert (row["best"], row["best_step"]) == (best["loss"], best["step"])
        assert row["metric"] == "loss" and row["updates"] == 12
        assert row["settings"] == {"train.lr": str(float(LRS[row["run"]]))}
        speeds = [r["tgt_tok_s"] for r in records if r["split"] == "train"]
        assert row["tok_s"] == round(statistics.median(speeds), 1)
        last_train = [r for r in records if r["split"] == "train"][-1]
        # The last record is a validation: its wall time is the last train record's plus the
        # clock time between them.
        assert row["wall_s"] == round(
            last_train["elapsed"] + records[-1]["time"] - last_train["time"], 1
        )
        assert row["test"] == {} and "bits_per_char" not in row
    code, out, _ = run_main(cli, [str(sweep), "--json", "--sort", "train.lr"], capsys)
    assert [r["run"] for r in json.loads(out)] == ["0", "1"]
    code, out, _ = run_main(
        cli, [str(sweep / "1"), str(sweep / "0"), "--json", "--sort", "run"], capsys
    )
    assert [r["run"] for r in json.loads(out)] == ["0", "1"]


def test_multirun_folder_same_as_its_runs_and_files(sweep, tmp_path, capsys):
    _, each, _ = run_main(cli, [str(sweep / "0"), str(sweep / "1"), "--title", "lr"], capsys)
    out_md, png = tmp_path / "table.md", tmp_path / "curves.png"
    args = [str(sweep), "--title", "lr", "--out", str(out_md), "--plot", str(png)]
    code, whole, err = run_main(cli, args, capsys)
    assert code == 0, err
    assert (
        whole == each
        and whole.startswith("## lr\n")
        and set(table_rows(whole)) == {"run", "0", "1"}
    )
    assert out_md.read_text(encoding="utf-8") == whole
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "curves.png",
        "table.md",
    ]  # no temporaries


def test_natural_order_of_subfolders(tmp_path, capsys):
    for name in ("10", "2", "1"):
        write_run(tmp_path / name, [{"split": "train", "step": 5, "elapsed": 1.0, "tgt_tok_s": 9}])
    code, out, err = run_main(cli, [str(tmp_path), "--json", "--sort", "run"], capsys)
    assert code == 0, err
    assert [r["run"] for r in json.loads(out)] == ["1", "10", "2"]  # --sort run: as text
    _, out, _ = run_main(cli, [str(tmp_path), "--json", "--sort", "updates"], capsys)
    assert [r["run"] for r in json.loads(out)] == ["1", "2", "10"]  # ties: folder order


def write_run(folder: Path, records: list[dict], config: str = "model:\n  arch: seq2seq\n") -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(config, encoding="utf-8")
    lines = [json.dumps({"time": 1000.0 + i, **r}) for i, r in enumerate(records)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_char_lm_runs_rank_by_loss_with_bits(tmp_path, capsys):
    config = "model:\n  arch: char_lm\n  hidden_dim: {}\n"
    for name, losses in (("small", [2.0, 1.6, 1.7]), ("big", [1.9, 1.4, 1.5])):
        records = [
            {"split": "valid", "step": 10 * (i + 1), "loss": x, "ppl": math.exp(x)}
            for i, x in enumerate(losses)
        ]
        write_run(tmp_path / name, records, config.format(len(name)))
    code, out, err = run_main(cli, [str(tmp_path)], capsys)
    assert code == 0, err
    rows = table_rows(out)
    assert list(rows) == ["run", "big", "small"]  # lower loss first
    assert rows["run"][6:8] == ["best val loss (step)", "bits/char"]
    assert rows["big"][1] == "model.hidden_dim=3" and rows["big"][2] == "–"  # no checkpoint
    assert rows["big"][6:8] == ["1.4000 (20)", f"{1.4 / math.log(2):.4f}"]
    assert rows["small"][6:8] == ["1.6000 (20)", f"{1.6 / math.log(2):.4f}"]


def test_buckets_known_bleu(tmp_path, capsys):
    run = write_run(tmp_path / "r1", [{"split": "valid", "step": 4, "bleu": 3.0, "loss": 2.0}])
    (run / "eval").mkdir()
    short = [f"a small dog number {i} runs on the grass" for i in range(4)]  # 8 words
    long = [" ".join(f"w{i}{j}" for j in range(30)) for i in range(3)]  # 30 words
    src = short + long
    (run / "eval" / "test.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (run / "eval" / "test.ref").write_text("\n".join(src) + "\n", encoding="utf-8")
    hyp = short + ["zzz yyy xxx"] * 3  # the short ones exact, the long ones all wrong
    (run / "eval" / "test.hyp").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    code, out, err = run_main(cli, [str(run), "--buckets"], capsys)
    assert code == 0, err
    rows = table_rows(out.split("BLEU by source length")[1])
    assert rows["run"][2:] == [
        "1-10 words",
        "11-15 words",
        "16-20 words",
        "21-25 words",
        "26+ words",
    ]
    assert rows["r1"][1:] == ["test", "100.00 (4)", "– (0)", "– (0)", "– (0)", "0.00 (3)"]
    code, out, err = run_main(
        cli, [str(run), "--buckets", "--bucket-edges", "30", "--json"], capsys
    )
    assert code == 0, err
    buckets = json.loads(out)[0]["buckets"]["test"]
    assert (
        buckets["1-30"]["n"] == 7
        and 0 < buckets["1-30"]["bleu"] < 100
        and buckets["31+"] == {"bleu": None, "n": 0}
    )


def test_differing_settings_prefer_group_overrides():
    def run(name: str, emb: str, seed: int, over: dict[str, str]) -> Run:
        config = {"embeddings.src.init": emb, "train.seed": seed, "train.lr": 0.002}
        return Run(Path(name), name, [], config, over, {"embeddings": emb, "model": "gru"})

    runs = [
        run("a", "random", 1, {"train.seed": "1"}),
        run("b", "pretrained", 2, {"embeddings": "pretrained", "train.seed": "2"}),
    ]
    assert differing_settings(runs) == [
        {"train.seed": "1", "embeddings": "random"},  # embeddings.src.init: under embeddings=
        {"train.seed": "2", "embeddings": "pretrained"},
    ]
    assert differing_settings(runs[:1]) == [{}]


def test_params_count_a_tied_table_once(tmp_path):
    table, other = torch.zeros(50, 4), torch.zeros(3)
    model = {"embed.weight": table, "out.weight": table, "out.bias": other}  # tied
    save_checkpoint(tmp_path / "last.pt", {"format_version": 1, "model": model})
    assert count_params(tmp_path) == 203


def test_validation_records_get_wall_time_from_the_clock():
    records = [
        {"split": "valid", "step": 0, "time": 99.0},
        {"split": "train", "step": 5, "time": 100.0, "elapsed": 10.0},
        {"split": "valid", "step": 5, "time": 103.5},
    ]
    assert [e for e, _ in with_elapsed(records)] == [9.0, 10.0, 13.5]


def test_one_line_errors(sweep, tmp_path, capsys):
    empty = tmp_path / "x"
    empty.mkdir()
    code, out, err = run_main(cli, [str(sweep / "0"), str(empty)], capsys)
    one_line_error(
        code, err, f"{empty} has no metrics.jsonl", "is it a run folder of nmt-train?", out=out
    )
    code, out, err = run_main(cli, [str(tmp_path / "missing")], capsys)
    one_line_error(code, err, "missing does not exist", out=out)
    code, out, err = run_main(cli, [str(sweep), "--metric", "bleux"], capsys)
    one_line_error(
        code, err, "--metric bleux is unknown: use one of bleu, chrf, loss, ppl", out=out
    )
    code, out, err = run_main(cli, [str(sweep), "--sort", "speed"], capsys)
    one_line_error(code, err, "--sort speed is not a column", "tok_s", "train.lr", out=out)
    code, out, err = run_main(cli, [str(sweep), "--buckets"], capsys)
    one_line_error(code, err, "none of the runs has eval/", out=out)
    code, out, err = run_main(cli, [str(sweep), "--plot", str(tmp_path / "no" / "c.png")], capsys)
    one_line_error(code, err, "--plot", "does not exist", out=out)
    lm = write_run(
        tmp_path / "lm", [{"split": "valid", "step": 1, "loss": 1.0}], "model: {arch: char_lm}\n"
    )
    code, out, err = run_main(cli, [str(lm), "--metric", "bleu"], capsys)
    one_line_error(
        code,
        err,
        f"{lm.resolve()} has no validation bleu (a char-LM run): use --metric loss",
        out=out,
    )
    code, out, err = run_main(cli, [str(lm), str(sweep)], capsys)
    one_line_error(code, err, "mix translation and char-LM runs", out=out)


def test_help_has_examples_and_python_m_nmt_knows_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "nmt-report runs/a runs/b" in out.split("examples:")[1]
    assert COMMANDS["report"][0] == "nmt.cli.report"  # python -m nmt report


def test_plot_adds_a_gradient_norm_panel_when_runs_logged_norms(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from nmt.report import build_rows, read_runs
    from nmt.report_plots import plot_curves

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    for name, norms in (("rnn", [9.0, 40.0]), ("gru", [2.0, 1.5])):
        records = [
            {
                "split": "train",
                "step": 5 * (i + 1),
                "elapsed": 1.0 + i,
                "tgt_tok_s": 9,
                "loss": 3.0,
                "grad_norm": g,
            }
            for i, g in enumerate(norms)
        ] + [{"split": "valid", "step": 10, "bleu": 1.0, "loss": 2.0}]
        write_run(tmp_path / "with" / name, records)
    write_run(tmp_path / "without" / "a", [{"split": "valid", "step": 10, "bleu": 1.0}])
    for folder, panels in (("with", 3), ("without", 2)):
        runs = read_runs([tmp_path / folder])
        plot_curves(runs, build_rows(runs, "bleu"), tmp_path / f"{folder}.png")
        axes = figures[-1].axes
        assert len(axes) == panels and (tmp_path / f"{folder}.png").stat().st_size > 1000
    norm_axis = figures[0].axes[2]
    assert norm_axis.get_yscale() == "log" and "gradient norm" in norm_axis.get_ylabel()
    plotted = sorted(tuple(line.get_ydata()) for line in norm_axis.get_lines())
    assert plotted == [(2.0, 1.5), (9.0, 40.0)]
