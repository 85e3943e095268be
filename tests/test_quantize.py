"""int8 decoding (nmt.models.quantize): close to fp32, really int8, and wired into the CLIs.

Measured on these tiny models (random weights from U(-0.3, 0.3): next-token log-probs
spanning ~1-2 nats): the largest |log p(int8) - log p(fp32)| over every position and
vocabulary entry, teacher-forced or step by step, was 0.035 nats (a tanh RNN with int8
linear layers; GRU 0.021, LSTM 0.009; means under 0.006); the tests allow ``TOLERANCE``.
Models that memorised the reversal task (log-probs down to -28) moved the reference tokens'
log-probs by at most 0.013 and found the same greedy and beam outputs for every pair.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import make_checkpoint, one_line_error, run_main, step_by_step
from omegaconf import OmegaConf
from test_models_overfit import VOCAB, reversal_pairs
from torch import nn
from torch.ao.nn.quantized import dynamic as qdynamic

from nmt.config import PAD_ID, DecodeConfig, ModelConfig
from nmt.errors import ConfigError, NMTError
from nmt.inference import load_for_inference, load_translation_model
from nmt.models.builder import build_model
from nmt.models.quantize import int8_layer_names, is_quantized, quantize_for_cpu
from nmt.quantize_scheme import quantize_device
from nmt.search import search
from nmt.search.ensemble import Ensemble
from nmt.search.table_step import TableStepSeq2Seq, search_view
from nmt.search.translator import Translator

TOLERANCE = 0.06  # nats, largest |delta log-prob| allowed (0.035 measured)
CELLS = ("gru", "lstm", "rnn")
ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general", "luong_concat")
LINES = ["A man in an orange hat.", "Two dogs run on the grass.", "A girl is eating.", "Hi."]


def _model(cell: str, attention: str, **kw) -> nn.Module:
    cfg = ModelConfig(
        cell=cell, attention=attention, emb_dim=16, hidden_dim=32, dropout=0.0, init_scale=0.3
    )
    torch.manual_seed(0)
    return build_model(OmegaConf.structured(dataclasses.replace(cfg, **kw)), 40, 50).eval()


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 9, 1, 3])  # unsorted: packing permutes rows and states
    src = torch.randint(4, 40, (4, 9), generator=g).masked_fill(
        torch.arange(9) >= lengths[:, None], PAD_ID
    )
    return src, lengths, torch.randint(4, 50, (4, 7), generator=g)


def _stepwise(model, src, lengths, tgt_in) -> torch.Tensor:
    """Log-probs ``(batch, steps, vocab)`` of :func:`conftest.step_by_step`."""
    return torch.stack(
        [log_probs for log_probs, _ in step_by_step(model, src, lengths, tgt_in)[0]], 1
    )


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("deep", [False, True], ids=["1-layer", "2-layer-feed-tied"])
def test_int8_log_probs_are_close_to_fp32(cell, attention, deep):
    """Packed bidirectional encoder, the bridge's initial state, teacher forcing over the
    whole target and step-by-step decoding with the state carried: all within TOLERANCE."""
    kw = {"layers": 2, "input_feeding": attention != "none", "tie_embeddings": True} if deep else {}
    model = _model(cell, attention, **kw)
    int8 = quantize_for_cpu(model)
    src, lengths, tgt_in = _batch()
    with torch.no_grad():
        for run in (lambda m: m(src, lengths, tgt_in)[0], lambda m: _stepwise(m, *_batch())):
            want, got = run(model), run(int8)
            delta = (got - want).abs().max().item()
            assert 0 < delta < TOLERANCE, delta  # 0 would mean nothing was quantized
            assert got.shape == want.shape and torch.isfinite(got).all()


def test_the_per_step_layers_and_gru_lstm_become_int8_the_rest_stays_fp32():
    model = _model("gru", "bahdanau", tie_embeddings=True, emb_dim=8)  # tied: a pre-output layer
    int8 = quantize_for_cpu(model)
    dec, enc = int8.decoder, int8.encoder
    for layer in (dec.out, dec.pre_output, dec.combine, dec.attention.query_proj):
        assert type(layer) is qdynamic.Linear
    assert dec.out.weight().qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    assert dec.out.weight().q_per_channel_scales().shape == (50,)  # one scale per vocab row
    assert type(enc.rnn) is qdynamic.GRU and type(dec.rnn) is qdynamic.GRU
    for name, weight in dec.rnn.get_weight().items():  # input and recurrent, per gate row
        assert weight.dtype == torch.qint8 and weight.q_per_channel_scales().shape == (96,), name
    for layer in (dec.attention.key_proj, dec.attention.v, int8.bridge.h):
        assert type(layer) is nn.Linear  # once per sentence, or a vector read as a tensor
    assert type(enc.embed.table) is nn.Embedding and type(dec.embed.table) is nn.Embedding
    # The model given is untouched, and the int8 one is what searches run (no GRU gate table).
    assert type(model.decoder.out) is nn.Linear and not is_quantized(model) and is_quantized(int8)
    assert isinstance(search_view(model), TableStepSeq2Seq) and search_view(int8) is int8

    lstm = quantize_for_cpu(_model("lstm", "luong_general"))
    assert type(lstm.encoder.rnn) is qdynamic.LSTM and type(lstm.decoder.rnn) is qdynamic.LSTM
    rnn = quantize_for_cpu(_model("rnn", "none"))
    assert type(rnn.encoder.rnn) is nn.RNN and type(rnn.decoder.rnn) is nn.RNN  # no int8 RNN
    assert int8_layer_names(_model("rnn", "none")) == ["decoder.out"]


def _trained(cell: str, attention: str, feed: bool) -> nn.Module:
    """A model that has memorised 64 reversal pairs (tests/test_models_overfit.py)."""
    src, lengths, tgt_in, tgt_out = reversal_pairs()
    torch.manual_seed(0)
    cfg = ModelConfig(
        cell=cell, attention=attention, input_feeding=feed, emb_dim=16, hidden_dim=32, dropout=0
    )
    model = build_model(OmegaConf.structured(cfg), VOCAB, VOCAB)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(80):  # loss ~0.01, every pair right
        log_probs, _ = model(src, lengths, tgt_in)
        loss = F.nll_loss(log_probs.reshape(-1, VOCAB), tgt_out.reshape(-1), ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    return model.eval()


@pytest.mark.parametrize(
    "cell,attention,feed",
    [("gru", "bahdanau", False), ("lstm", "luong_general", True)],
)
def test_a_trained_model_finds_the_same_translations_in_int8(cell, attention, feed):
    """Peaked distributions (log-probs down to -28): the reference tokens' log-probs stay
    within TOLERANCE (0.013 measured), and the searches find the same outputs."""
    model = _trained(cell, attention, feed)
    int8 = quantize_for_cpu(model)
    src, lengths, tgt_in, tgt_out = reversal_pairs()
    with torch.no_grad():
        want, got = (m(src, lengths, tgt_in)[0] for m in (model, int8))
    real = tgt_out != PAD_ID
    index = tgt_out.unsqueeze(-1)
    delta = (want.gather(-1, index) - got.gather(-1, index)).squeeze(-1)[real].abs().max()
    assert delta.item() < TOLERANCE
    for decode in (DecodeConfig(method="greedy"), DecodeConfig(method="beam", beam_size=3)):
        with torch.inference_mode():
            want = search(search_view(model), src, lengths, decode)
            got = search(search_view(int8), src, lengths, decode)
        same = sum(a[0].tokens == b[0].tokens for a, b in zip(want, got))
        assert same >= 0.9 * len(want), (decode.method, same)
        for a, b in zip(want, got):
            if a[0].tokens == b[0].tokens:
                assert b[0].score == pytest.approx(a[0].score, abs=TOLERANCE * len(a[0].tokens))


def test_an_ensemble_quantizes_every_member():
    members = [_model("gru", "bahdanau"), _model("lstm", "luong_dot")]  # 5 + 4 int8 layers
    ensemble = Ensemble(members).eval()
    int8 = quantize_for_cpu(ensemble)
    assert isinstance(int8, Ensemble) and len(int8_layer_names(ensemble)) == 9
    assert all(type(m.decoder.out) is qdynamic.Linear for m in int8.members)
    with torch.no_grad():
        want, got = _stepwise(ensemble, *_batch()), _stepwise(int8, *_batch())
    assert 0 < (got - want).abs().max().item() < TOLERANCE


def test_int8_is_cpu_only_and_for_fp32_translation_models():
    assert quantize_device("int8", "auto") == "cpu" and quantize_device("int8", "cpu") == "cpu"
    assert quantize_device(None, "auto") == "auto" and quantize_device(None, "cuda") == "cuda"
    with pytest.raises(ConfigError, match=r"^--quantize int8 runs on the CPU only .*--device cuda"):
        quantize_device("int8", "cuda")
    with pytest.raises(ConfigError, match="'int4' is unknown: use int8"):
        quantize_device("int4", "cpu")
    lm = build_model(
        OmegaConf.structured(ModelConfig(arch="char_lm", attention="none", hidden_dim=16)), 0, 30
    )
    with pytest.raises(NMTError, match="only translation models"):
        quantize_for_cpu(lm)
    with pytest.raises(NMTError, match="from fp32 weights on the CPU, not torch.float64"):
        quantize_for_cpu(_model("gru", "none").double())
    int8 = quantize_for_cpu(_model("gru", "bahdanau", tie_embeddings=True, emb_dim=8))
    with pytest.raises(NMTError, match=r"^an int8 model \(--quantize int8\) can only decode"):
        int8.output_projection(torch.zeros(2, 32))  # what the training loss calls


def test_quantizing_warns_nothing_and_a_torch_without_the_api_is_one_error(monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_for_cpu(_model("gru", "bahdanau"))
    assert not [w for w in caught if "quantiz" in str(w.message)], [str(w.message) for w in caught]
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # the import now fails
    with pytest.raises(NMTError, match=r"needs torch\.ao\.quantization\.quantize_dynamic"):
        quantize_for_cpu(_model("gru", "none"))


@pytest.fixture(scope="module")
def run_dir(tiny_tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    make_checkpoint(folder / "best.pt", tiny_tokenizer, tiny_tokenizer, seed=0)
    make_checkpoint(folder / "other.pt", tiny_tokenizer, tiny_tokenizer, seed=1)
    return folder


def test_nmt_translate_quantize_int8_end_to_end(run_dir, capsys, monkeypatch):
    from nmt.cli import translate

    model, src_tok, tgt_tok, cfg = load_for_inference(run_dir)
    decode = OmegaConf.to_object(cfg.decode)
    int8 = quantize_for_cpu(model)
    want = Translator(int8, src_tok, tgt_tok, decode).translate(LINES)
    stdin = "\n".join(LINES) + "\n"
    code, out, err = run_main(
        translate, [str(run_dir), "--quantize", "int8"], capsys, stdin, monkeypatch
    )
    assert code == 0 and out.splitlines() == want, err
    assert "cpu int8)" in err  # the timing line says how it decoded
    # Forked workers share the int8 model and find the translations of one process at the
    # same batching: activation scales are per call, so other batches may round otherwise.
    alone = dataclasses.replace(decode, max_sentences=1)
    want_alone = Translator(int8, src_tok, tgt_tok, alone).translate(LINES)
    workers = [str(run_dir), "--quantize", "int8", "--workers", "2", "--batch-size", "1", "--quiet"]
    code, out, err = run_main(translate, workers, capsys, stdin, monkeypatch)
    assert code == 0 and out.splitlines() == want_alone, err
    other, *_ = load_for_inference(run_dir / "other.pt")
    int8_ensemble = quantize_for_cpu(Ensemble([model, other]).eval())
    want = Translator(int8_ensemble, src_tok, tgt_tok, decode).translate(LINES)
    ensemble = [str(run_dir), "--quantize", "int8", "--ensemble", str(run_dir / "other.pt")]
    code, out, err = run_main(translate, [*ensemble, "--quiet"], capsys, stdin, monkeypatch)
    assert code == 0 and out.splitlines() == want, err
    code, out, err = run_main(
        translate,
        [str(run_dir), "--quantize", "int8", "--device", "cuda"],
        capsys,
        stdin,
        monkeypatch,
    )
    one_line_error(code, err, "--quantize int8 runs on the CPU only", out=out)
    loaded, *_ = load_translation_model(
        run_dir, [str(run_dir / "other.pt")], torch.device("cpu"), "int8"
    )
    assert isinstance(loaded, Ensemble) and all(is_quantized(m) for m in loaded.members)


def test_nmt_evaluate_and_nmt_serve_take_quantize(run_dir):
    from nmt.cli import evaluate
    from nmt.serve.model import load_served_model

    args = evaluate.parse_args([str(run_dir), "--quantize", "int8", "--device", "cuda"])
    with pytest.raises(ConfigError, match="runs on the CPU only"):
        evaluate.evaluate(args)
    fp32 = load_served_model(run_dir, "cpu")
    served = load_served_model(run_dir, "auto", quantize="int8")
    assert is_quantized(served.translator.model) and served.translator.device.type == "cpu"
    assert served.info["quantize"] == "int8" and fp32.info["quantize"] is None
    assert served.info["parameters"] == fp32.info["parameters"]
    assert len(served.translator.translate(LINES)) == len(LINES)


def test_nmt_evaluate_int8_writes_eval_int8_and_the_fp32_scores_stay_fp32(
    run_dir, tmp_path, capsys, monkeypatch
):
    """``RUN/eval`` holds the run's (fp32) scores, which nmt-report and nmt-serve's /models
    show: int8 ones go to ``RUN/eval_int8``, and a quantized results file is not shown."""
    from nmt.cli import evaluate
    from nmt.report import eval_scores as report_scores
    from nmt.serve.model import eval_scores as served_scores

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    shutil.copy(run_dir / "best.pt", run / "best.pt")
    fp32 = json.dumps({"quantize": None, "splits": {"test": {"bleu": 12.5, "chrf": 40.25}}})
    (run / "eval" / "results.json").write_text(fp32, encoding="utf-8")
    split = SimpleNamespace(src_text=LINES, tgt_text=LINES)  # no data preparation
    monkeypatch.setattr(evaluate, "prepare", lambda cfg: SimpleNamespace(splits={"test": split}))
    args = [str(run), "--quantize", "int8", "--splits", "test", "--no-lc-tok"]
    code, out, err = run_main(evaluate, args, capsys)
    assert code == 0, err
    int8 = json.loads((run / "eval_int8" / "results.json").read_text(encoding="utf-8"))
    assert int8["quantize"] == "int8" and list(int8["splits"]) == ["test"]
    assert (run / "eval_int8" / "test.hyp").is_file()
    assert [p.name for p in (run / "eval").iterdir()] == ["results.json"]
    assert (run / "eval" / "results.json").read_text(encoding="utf-8") == fp32
    scores = {"test": {"bleu": 12.5, "chrf": 40.25}}
    assert report_scores(run) == scores and served_scores(run / "eval" / "results.json") == scores
    # int8 scores written into RUN/eval by hand (--out RUN/eval) are not shown as the run's.
    (run / "eval" / "results.json").write_text(json.dumps(int8), encoding="utf-8")
    assert report_scores(run) == {} and served_scores(run / "eval" / "results.json") == {}


def test_nmt_serve_passes_quantize_to_its_model_loader(run_dir, capsys, monkeypatch):
    pytest.importorskip("uvicorn")
    from nmt.cli import serve
    from nmt.serve import model as served_model

    calls = []

    def loader(*args, **kwargs):
        calls.append((args, kwargs))
        raise NMTError("stopped before loading")  # no model, no server

    monkeypatch.setattr(served_model, "load_served_model", loader)
    code, out, err = run_main(serve, [str(run_dir), "--quantize", "int8"], capsys)
    one_line_error(code, err, "stopped before loading", out=out)
    assert calls == [((str(run_dir), "auto", None, 250, "int8"), {"batch_threads": None})]


def test_building_the_cli_parsers_imports_no_torch():
    """``--help`` and flag errors stay quick: the --quantize checks need no torch."""
    code = (
        "import sys; from nmt.cli import serve; serve.parse_args(['run', '--quantize', 'int8']); "
        "from nmt.cli import decode_flags; import nmt.quantize_scheme; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_the_bench_compares_int8_with_fp32(run_dir):
    from nmt.bench_decode import compare_int8

    model, src_tok, tgt_tok, _ = load_for_inference(run_dir)
    row = compare_int8(model, src_tok, tgt_tok, LINES, LINES, "beam5", passes=1)
    assert row["fp32_sent_s"] > 0 and row["int8_sent_s"] > 0 and row["int8_speedup"] > 0
    assert 0 <= row["same_output"] <= 1 and row["fp32_bleu"] >= 0 and row["int8_bleu"] >= 0
    assert row["method"] == "beam5" and row["sentences"] == len(LINES) and row["passes"] == 1


def test_nmt_evaluate_ensemble_writes_eval_ensemble_which_is_not_the_runs_score(
    run_dir, tmp_path, capsys, monkeypatch
):
    """``--ensemble`` decodes with the averaged members into ``RUN/eval_ensemble``; its
    results file names the members and is not shown as the run's own score."""
    from nmt.cli import evaluate
    from nmt.report import eval_scores as report_scores
    from nmt.serve.model import eval_scores as served_scores

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "best.pt", run / "best.pt")
    split = SimpleNamespace(src_text=LINES, tgt_text=LINES)
    monkeypatch.setattr(evaluate, "prepare", lambda cfg: SimpleNamespace(splits={"test": split}))
    member = str(run_dir / "best.pt")
    args = [str(run), "--ensemble", member, "--splits", "test", "--no-lc-tok", "--greedy"]
    code, out, err = run_main(evaluate, args, capsys)
    assert code == 0, err
    results = json.loads((run / "eval_ensemble" / "results.json").read_text(encoding="utf-8"))
    assert results["ensemble"] == [member] and not (run / "eval").exists()
    # A model ensembled with itself translates as the model alone.
    code, out, err = run_main(
        evaluate, [str(run), "--splits", "test", "--no-lc-tok", "--greedy"], capsys
    )
    assert code == 0, err
    single = (run / "eval" / "test.hyp").read_text(encoding="utf-8")
    assert (run / "eval_ensemble" / "test.hyp").read_text(encoding="utf-8") == single
    (run / "eval" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert report_scores(run) == {} and served_scores(run / "eval" / "results.json") == {}
