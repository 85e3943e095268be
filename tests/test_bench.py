"""The benchmark's analytic FLOP count agrees with torch's own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from nmt.bench import flops_by_part, flops_per_target_token, part_fraction_of_peak
from nmt.cli.bench import format_table
from nmt.config import ModelConfig
from nmt.models.builder import build_model


@pytest.mark.parametrize(
    "attention,feeding",
    [("bahdanau", False), ("bahdanau", True), ("luong_general", False), ("none", False)],
)
def test_flops_per_target_token_matches_flop_counter(attention, feeding):
    # GRU only: torch's counter does not see inside the CPU LSTM kernel.
    cfg = OmegaConf.structured(
        ModelConfig(attention=attention, input_feeding=feeding, emb_dim=16, hidden_dim=24, layers=2)
    )
    torch.manual_seed(0)
    model = build_model(cfg, 50, 60)
    batch, src_len, tgt_len = 3, 7, 5
    src = torch.randint(4, 50, (batch, src_len))
    tgt_in = torch.randint(4, 60, (batch, tgt_len))
    with FlopCounterMode(display=False) as counter:
        hidden, _ = model.features(src, torch.full((batch,), src_len), tgt_in)
        x, weight, bias = model.output_projection(hidden)
        torch.nn.functional.linear(x, weight, bias)
    counted = counter.get_total_flops() / (batch * tgt_len)  # forward only
    analytic = flops_per_target_token(cfg, 50, 60, src_len / tgt_len, src_len) / 3
    assert analytic == pytest.approx(counted, rel=0.05)


def test_flops_by_part_matches_the_counter_per_module_and_sums_to_the_total():
    cfg = OmegaConf.structured(ModelConfig(emb_dim=16, hidden_dim=24, layers=2))
    torch.manual_seed(0)
    model = build_model(cfg, 50, 60)
    batch, src_len, tgt_len = 3, 7, 5
    src = torch.randint(4, 50, (batch, src_len))
    with FlopCounterMode(display=False) as counter:
        model.features(src, torch.full((batch,), src_len), torch.randint(4, 60, (batch, tgt_len)))
    counted = {k: sum(v.values()) / (batch * tgt_len) for k, v in counter.get_flop_counts().items()}
    parts = flops_by_part(cfg, 50, 60, src_len / tgt_len, src_len)
    assert parts["encoder"] / 3 == pytest.approx(counted["Encoder"], rel=1e-6)
    assert parts["decoder RNN"] / 3 == pytest.approx(counted["GRU"], rel=1e-6)  # decoder's GRU
    assert parts["output layer + loss"] == 3 * 2 * 24 * 60
    assert sum(parts.values()) == flops_per_target_token(cfg, 50, 60, src_len / tgt_len, src_len)


def test_part_fraction_of_peak_divides_each_parts_rate_by_its_time_share():
    row = {
        "tgt_tok_s": 1000,
        "flops_by_part": {"encoder": 4e6, "attention": 2e6, "decoder RNN": 1e6},
        "time_split": {"encoder": 0.5, "attention": 0.1, "optimizer": 0.4},
    }
    # encoder: 4e6 * 1000 / 0.5 = 8 GFLOP/s of a 10 GFLOP/s peak; no time share: left out
    assert part_fraction_of_peak(row, 10.0) == {"encoder": 0.8, "attention": 2.0}


def test_format_table_lists_every_row():
    train = {
        "input_feeding": False,
        "tgt_tokens_per_update": 2000,
        "tgt_tok_s": 3000,
        "ms_per_step": 600.0,
        "flops_per_tgt_token": 1.4e7,
        "fraction_of_peak": 0.4,
        "peak_rss_mib": 700,
    }
    decode = {
        "method": "beam5",
        "sentences": 1000,
        "sent_s": 200.0,
        "out_tok_s": 3000,
        "bleu": 40.0,
        "chrf": 60.0,
        "workers": 1,
        "threads_per_worker": 2,
        "peak_rss_mib": 400,
        "worker_peak_rss_mib": 0,
    }
    result = {
        "mode": "quick",
        "threads": 2,
        "torch": "x",
        "matmul": {"gflops": 100.0},
        "train": [train, {**train, "input_feeding": True}],
        "decode_model": {"trained_here": True, "trained_updates": 300},
        "decode": [
            decode,
            {**decode, "method": "greedy"},
            {**decode, "workers": 2, "threads_per_worker": 1, "worker_peak_rss_mib": 350},
            {**decode, "batch_threads": 2, "threads_per_worker": 1, "sent_s": 230.0},
        ],
        "decode_int8": [
            {
                "method": "beam5",
                "sentences": 1000,
                "workers": 1,
                "threads_per_worker": 2,
                "passes": 3,
                "fp32_sent_s": 200.0,
                "int8_sent_s": 260.0,
                "int8_speedup": 1.3,
                "fp32_bleu": 40.0,
                "int8_bleu": 39.9,
                "same_output": 0.97,
            }
        ],
    }
    table = format_table(result)
    assert "| input feeding off | 2000 | 3000 | 600.0 |" in table
    assert "| input feeding on |" in table and "| beam5 | 1 x 1 x 2 | 1000 | 200.0 |" in table
    assert "| beam5 | 2 x 1 x 1 | 1000 | 200.0 |" in table and "| 400 (350) |" in table
    assert "| beam5 | 1 x 2 x 1 | 1000 | 230.0 |" in table  # batch threads in one process
    assert "| greedy |" in table and "matmul peak 100.0 GFLOP/s" in table
    assert (
        "median of 3 (fp32 measured again here" in table
        and "| beam5 | 1 x 1 x 2 | 200.0 | 260.0 | 1.30 | 40.0 | 39.9 | 97 % |" in table
    )
    assert "int8" not in format_table({**result, "decode_int8": []})  # an older bench.json
    assert "% of the matmul peak" not in table  # no per-part fractions: an older bench.json
    fractions = {"encoder": 0.42, "output layer + loss": 0.9}
    rows = [{**r, "part_fraction_of_peak": fractions} for r in result["train"]]
    parted = format_table({**result, "train": rows})
    assert "| input feeding off | 42.0 | 90.0 |" in parted.split("% of the matmul peak")[1]
    assert "shortlist" not in table  # no shortlist rows: an older bench.json
    short = {
        **{k: result["decode_int8"][0][k] for k in ("method", "workers", "threads_per_worker")},
        **{"passes": 3, "shortlist": 50, "mean_candidates": 311.2, "vocab": 5470},
        **{"full_sent_s": 40.0, "shortlist_sent_s": 52.0, "shortlist_speedup": 1.3},
        **{"full_bleu": 40.0, "shortlist_bleu": 39.8, "same_output": 0.8},
    }
    table = format_table({**result, "decode_shortlist": [short]})
    assert "(--shortlist 50)" in table and "311.2 of 5470" in table
    assert "| beam5 | 1 x 1 x 2 | 40.0 | 52.0 | 1.30 | 40.0 | 39.8 | 80 % |" in table


def test_bench_smoke_run_writes_every_field(shared_data, monkeypatch, tmp_path):
    """The whole bench, shrunk (tiny model, a few steps, 40 sentences; phases in this process):
    every number the table and the JSON report is there and positive."""
    from nmt.bench import BenchPlan, run_bench

    monkeypatch.setenv("NMT_DATA_MIRROR", str(shared_data))
    tiny = BenchPlan(
        warmup=1,
        steps=2,
        profile_steps=1,
        decode_updates=2,
        decode_sentences=40,  # two batches of at most 32: the 2-worker/2-thread rows use them
        int8_passes=1,
        tokens_per_update=300,
        overrides=[
            "data.train_limit=300",
            "tokenizer.vocab_size=300",
            "tokenizer.input_sentence_size=3000",
            "model.emb_dim=16",
            "model.hidden_dim=32",
            "train.valid_max_sentences=4",
            "train.log_every=1",
        ],
    )
    result = run_bench(tiny, 2, None, tmp_path, log=lambda *_: None, mode="smoke", isolate=False)
    assert result["matmul"]["gflops"] > 0
    assert [r["input_feeding"] for r in result["train"]] == [False, True]
    for row in result["train"]:
        for key in (
            "tgt_tok_s",
            "ms_per_step",
            "flops_per_tgt_token",
            "peak_rss_mib",
            "achieved_gflops",
            "roofline_tgt_tok_s",
            "tgt_tokens_per_update",
        ):
            assert row[key] > 0, key
        assert row["timed_steps"] == 2
        split = row["time_split"]
        assert sum(split.values()) == pytest.approx(1.0, abs=0.01)
        for part in ("encoder", "decoder RNN", "attention", "output layer + loss", "optimizer"):
            assert split[part] > 0, part
    assert result["decode_model"]["trained_here"] and result["decode_model"]["trained_updates"] == 2

    def layouts(rows):
        return [
            (r["method"], r["workers"], r["batch_threads"], r["threads_per_worker"]) for r in rows
        ]

    rows = layouts(result["decode"])
    assert rows == [
        ("greedy", 1, 1, 2),
        ("beam5", 1, 1, 2),
        ("greedy", 2, 1, 1),
        ("beam5", 2, 1, 1),
        ("greedy", 1, 2, 1),
        ("beam5", 1, 2, 1),
    ]
    for row in result["decode"]:
        assert row["sentences"] == 40
        for key in ("sent_s", "out_tok_s", "seconds", "peak_rss_mib"):
            assert row[key] > 0, key
        assert (row["worker_peak_rss_mib"] > 0) == (row["workers"] > 1)
        assert row["bleu"] >= 0 and "nrefs:1" in row["bleu_signature"]
    assert layouts(result["decode_int8"]) == rows
    for row in result["decode_int8"]:
        assert row["fp32_sent_s"] > 0 and row["int8_sent_s"] > 0 and row["int8_speedup"] > 0
        assert row["passes"] == tiny.int8_passes and 0 <= row["same_output"] <= 1
    assert layouts(result["decode_shortlist"]) == rows
    for row in result["decode_shortlist"]:
        assert row["full_sent_s"] > 0 and row["shortlist_sent_s"] > 0
        assert 0 < row["mean_candidates"] <= row["vocab"] and row["shortlist"] == 50
    table = format_table(result)
    assert "time split of a training step" in table
    # the speed row, the time split row and the fraction-of-peak row
    assert table.count("| input feeding on |") == 3 and "% of the matmul peak" in table
    for row in result["train"]:
        assert set(row["part_fraction_of_peak"]) == set(row["flops_by_part"])
        assert all(f > 0 for f in row["part_fraction_of_peak"].values())
