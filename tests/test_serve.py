"""nmt-serve's API on a tiny real checkpoint (random weights): FastAPI's TestClient, the
batcher on its own, the command line and the load-test client."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="nmt-serve needs the serve extra: pip install -e '.[serve]'")

with warnings.catch_warnings():  # Starlette now prefers httpx2; httpx works the same here
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from conftest import make_checkpoint, one_line_error, run_main  # noqa: E402

from nmt.errors import ConfigError  # noqa: E402
from nmt.inference import load_translation_model  # noqa: E402
from nmt.search.alignment import pharaoh, surface_pieces, word_alignment  # noqa: E402
from nmt.search.translator import Translator  # noqa: E402
from nmt.serve.app import create_app  # noqa: E402
from nmt.serve.model import load_served_model  # noqa: E402
from nmt.serve.settings import ServeSettings  # noqa: E402

WAIT_S = 60  # every wait in these tests is bounded


@pytest.fixture(scope="module")
def run_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    """A run folder: best.pt (beam 3, at most 0.2 x source + 4 pieces) and eval results."""
    folder = tmp_path_factory.mktemp("serve_run")
    make_checkpoint(folder / "best.pt", tiny_tokenizer, tiny_tokenizer)
    (folder / "eval").mkdir()
    results = {"splits": {"test_2016_flickr": {"bleu": 12.5, "chrf": 40.25, "seconds": 1.0}}}
    (folder / "eval" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sentences(tiny_parallel) -> list[str]:
    return tiny_parallel["test_src"].read_text(encoding="utf-8").splitlines()[:8]


def reference(run_dir: Path, **changes) -> Translator:
    """A Translator of its own, the checkpoint's decode settings with ``changes``."""
    model, src, tgt, decode, _ = load_translation_model(run_dir, [], torch.device("cpu"))
    return Translator(model, src, tgt, dataclasses.replace(decode, **changes))


def client_of(run_dir: Path, **limits) -> tuple[TestClient, Translator]:
    served = load_served_model(run_dir, "cpu")
    return TestClient(create_app(served, ServeSettings(**limits))), served.translator


def spy_calls(translator: Translator, gate: threading.Event | None = None) -> list:
    """Record (cfg, number of lines, kwargs) of every translate_nbest call; with ``gate``,
    each call waits for it first."""
    calls: list = []
    real = translator.translate_nbest

    @functools.wraps(real)
    def spy(lines, return_attention=False, **kwargs):
        calls.append((translator.cfg, len(lines), kwargs))
        if gate is not None:
            assert gate.wait(WAIT_S), "the test never opened the gate"
        return real(lines, return_attention, **kwargs)

    translator.translate_nbest = spy
    return calls


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_translations_equal_the_translators(run_dir, sentences):
    client, _ = client_of(run_dir)
    expected = reference(run_dir).translate(sentences + [""])
    with client:
        one = client.post("/translate", json={"sentences": sentences[:1]})
        many = client.post("/translate", json={"sentences": sentences + ["  "]})
    assert one.status_code == 200 and many.status_code == 200, many.text
    assert [n[0]["text"] for n in one.json()["translations"]] == expected[:1]
    got = many.json()["translations"]
    assert [n[0]["text"] for n in got[:-1]] == expected[:-1] and got[-1] == []
    assert len(set(expected)) > 3  # the sentences really differ


def test_nbest_scores_tokens_and_attention(run_dir, sentences, tiny_tokenizer):
    client, _ = client_of(run_dir)
    ref = reference(run_dir, beam_size=4, n_best=3).translate_nbest(sentences[:2], True)
    body = {"sentences": sentences[:2], "beam": 4, "n_best": 3, "alignments": True}
    with client:
        got = client.post("/translate", json=body).json()["translations"]
    for line, nbest, ref_nbest in zip(sentences, got, ref):
        assert [h["text"] for h in nbest] == [t.text for t in ref_nbest] and len(nbest) == 3
        assert [h["score"] for h in nbest] == pytest.approx([t.score for t in ref_nbest], abs=1e-3)
        scores = [h["score"] for h in nbest]
        assert scores == sorted(scores, reverse=True)
        for hyp, t in zip(nbest, ref_nbest):
            assert hyp["tokens"] == [tiny_tokenizer.id_to_piece(i) for i in t.tokens]
            assert hyp["source_pieces"] == tiny_tokenizer.pieces(line)
            rows, cols = t.attention.shape
            assert len(hyp["attention"]) == rows and rows in (len(t.tokens), len(t.tokens) + 1)
            assert all(len(row) == cols == len(hyp["source_pieces"]) for row in hyp["attention"])
            assert hyp["attention"][0] == pytest.approx(t.attention[0].tolist(), abs=1e-3)
            source = surface_pieces(tiny_tokenizer, line)
            assert hyp["alignment"] == pharaoh(word_alignment(source, hyp["tokens"], t.attention))
    with client:
        plain = client.post("/translate", json={"sentences": sentences[:1]}).json()
    assert set(plain["translations"][0][0]) == {"text", "score", "tokens"}


def test_per_request_settings_reach_the_search(run_dir, sentences):
    client, translator = client_of(run_dir)
    calls = spy_calls(translator)
    with client:
        default = client.post("/translate", json={"sentences": sentences[:2]}).json()
        asked = client.post(
            "/translate",
            json={"sentences": sentences[:2], "beam": 2, "n_best": 2, "length_penalty": 0.0},
        ).json()
        widened = client.post("/translate", json={"sentences": sentences[:1], "n_best": 4})
    first, second, third = (cfg for cfg, _, _ in calls)
    assert (first.beam_size, first.n_best, first.length_penalty) == (3, 1, 1.0)  # the checkpoint's
    assert (second.beam_size, second.n_best, second.length_penalty) == (2, 2, 0.0)
    assert (third.beam_size, third.n_best) == (4, 4)  # the beam keeps n_best hypotheses
    assert len(widened.json()["translations"][0]) == 4
    ref = reference(run_dir, beam_size=2, n_best=2, length_penalty=0.0)
    assert [[h["text"] for h in n] for n in asked["translations"]] == [
        [t.text for t in n] for n in ref.translate_nbest(sentences[:2])
    ]
    assert [len(n) for n in default["translations"]] == [1, 1]


LIMITS = {
    "max_sentences": 4,
    "max_chars": 50,
    "max_body_bytes": 2000,
    "max_beam": 8,
    "max_aligned": 4,
}


@pytest.mark.parametrize(
    "body,status,needle",
    [
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b'{"sentences": ["a"', 400, "not JSON"),
        (b"", 400, "not JSON"),
        (b'["a dog"]', 400, "JSON object"),
        (b"{}", 400, "sentences must be a list of strings"),
        (b'{"sentences": "a dog"}', 400, "sentences must be a list of strings"),
        (b'{"sentences": [1]}', 400, "sentences must be a list of strings"),
        (b'{"sentences": []}', 400, "sentences is empty"),
        (b'{"sentences": ["a", "b", "c", "d", "e"]}', 400, "limit is 4 (--max-sentences)"),
        (b'{"sentences": ["' + b"x" * 51 + b'"]}', 400, "sentence 1 has 51 characters"),
        (b'{"sentences": ["a"], "beam": 0}', 400, "beam must be an integer from 1 to 8"),
        (b'{"sentences": ["a"], "beam": 9}', 400, "beam must be an integer from 1 to 8"),
        (b'{"sentences": ["a"], "beam": "5"}', 400, "beam must be an integer"),
        (b'{"sentences": ["a"], "beam": 2.5}', 400, "beam must be an integer"),
        (b'{"sentences": ["a"], "n_best": true}', 400, "n_best must be an integer"),
        (b'{"sentences": ["a"], "length_penalty": -1}', 400, "length_penalty must be a number"),
        (b'{"sentences": ["a"], "length_penalty": NaN}', 400, "length_penalty must be a number"),
        (b'{"sentences": ["a"], "alignments": "yes"}', 400, "alignments must be true or false"),
        (b'{"sentences": ["a"], "bem": 5}', 400, "unknown field 'bem'"),
        (b'{"sentences": ["a"], "prefix": ["x", "y"]}', 400, "prefix must be a list of 1"),
        (b'{"sentences": ["a"], "terms": [["dog"]]}', 400, "terms must be a list of [source"),
        (b'{"sentences": ["a"], "terms": [["", "x"]]}', 400, "terms must be a list of [source"),
        (b'{"sentences": ["' + b"x" * 2100 + b'"]}', 413, "over 2000 bytes (--max-body-bytes)"),
        (b'{"sentences": ["a"], "length_penalty": ' + b"9" * 400 + b"}", 400, "length_penalty"),
        (b'{"sentences": ["a", "b"], "n_best": 8, "alignments": true}', 400, "at most 4 hyp"),
        (
            b'{"sentences": ["a dog"], "beam": 2, "terms": [["dog", "' + b"x" * 40 + b'"]]}',
            400,
            "terms: the target term",
        ),
    ],
)
def test_bad_requests_get_one_json_error(run_dir, body, status, needle):
    client, translator = client_of(run_dir, **LIMITS)
    calls = spy_calls(translator)
    with client:
        response = client.post("/translate", content=body)
        after = client.post("/translate", json={"sentences": ["A dog."]})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error and "\n" not in error and "Traceback" not in error
    assert after.status_code == 200 and len(calls) == 1  # refused before decoding; still serving


def test_an_integer_too_long_for_python_json_is_a_400(run_dir):
    """json.loads refuses integers over 4,300 digits with a ValueError, not a JSONDecodeError."""
    client, _ = client_of(run_dir)
    with client:
        response = client.post(
            "/translate", content=b'{"sentences": ["a"], "beam": 9' + b"9" * 5000 + b"}"
        )
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_a_streamed_body_is_cut_off_at_the_limit(run_dir):
    """Without a Content-Length (chunked upload) the limit is counted while reading."""
    client, translator = client_of(run_dir, max_body_bytes=2000)
    calls = spy_calls(translator)
    chunks = [b'{"sentences": ["', *([b"x" * 500] * 5), b'"]}']
    with client:
        response = client.post("/translate", content=iter(chunks))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and "--max-body-bytes" in response.json()["error"]
    assert calls == []


def test_unknown_paths_and_methods_answer_json(run_dir):
    client, _ = client_of(run_dir)
    with client:
        missing = client.get("/nope")
        wrong_method = client.get("/translate")
    assert missing.status_code == 404 and "POST /translate" in missing.json()["error"]
    assert wrong_method.status_code == 405 and "GET /translate" in wrong_method.json()["error"]


def test_prefix_and_terms_reach_the_translator(run_dir):
    terminology = pytest.importorskip("nmt.search.terminology")
    client, translator = client_of(run_dir)
    calls = spy_calls(translator)
    body = {
        "sentences": ["A dog.", "A cat."],
        "prefix": ["Un chat", None],
        "terms": [["dog", "chien"]],
    }
    duplicate = {"sentences": ["A dog."], "terms": [["dog", "chien"], ["Dog", "chienne"]]}
    with client:
        response = client.post("/translate", json=body)
        refused = client.post("/translate", json=duplicate)
    assert response.status_code == 200, response.text
    assert calls[0][2]["prefixes"] == ["Un chat", None]
    assert isinstance(calls[0][2]["terms"], terminology.TermTable)
    assert response.json()["translations"][0][0]["text"].startswith("Un chat")
    assert refused.status_code == 400 and refused.json()["error"].startswith("terms: ")
    assert len(calls) == 1


def test_alignments_are_those_of_nmt_translate(run_dir, sentences, capsys, monkeypatch):
    """``alignment`` is the line ``nmt-translate --alignments -`` appends to the same text."""
    from nmt.cli import translate

    client, _ = client_of(run_dir)
    with client:
        got = client.post("/translate", json={"sentences": sentences, "alignments": True})
    assert got.status_code == 200, got.text
    served = [[n[0]["text"], n[0]["alignment"]] for n in got.json()["translations"]]
    text = "".join(line + "\n" for line in sentences)
    args = [str(run_dir), "--alignments", "-", "--quiet"]
    code, out, err = run_main(translate, args, capsys, text, monkeypatch)
    assert code == 0, err
    assert served == [row.split(" ||| ") for row in out.splitlines()]
    assert any(" " in link for _, link in served)  # several links: not a trivial comparison


def test_the_models_default_method_with_prefix_and_terms(run_dir):
    """Sampling follows prefixes; terms need beam search: a 400 naming the ``beam`` field
    when the model decodes otherwise by default (before: a 500 from the decoding thread)."""
    for method in ("sample", "greedy"):
        served = load_served_model(run_dir, "cpu")
        served.translator.cfg = dataclasses.replace(served.translator.cfg, method=method)
        client = TestClient(create_app(served, ServeSettings()))
        with client:
            prefix = client.post("/translate", json={"sentences": ["A dog."], "prefix": ["Un"]})
            terms = client.post("/translate", json={"sentences": ["A"], "terms": [["a", "b"]]})
            beam = client.post(
                "/translate", json={"sentences": ["A"], "terms": [["a", "b"]], "beam": 2}
            )
        assert prefix.status_code == 200, prefix.text
        assert prefix.json()["translations"][0][0]["text"].startswith("Un")
        error = terms.json()["error"]
        assert terms.status_code == 400 and '"beam"' in error and method in error, terms.text
        assert beam.status_code == 200, beam.text


def test_queue_full_is_503_and_the_queued_requests_still_finish(run_dir):
    client, translator = client_of(run_dir, max_queue=1, batch_window_ms=0)
    gate = threading.Event()
    calls = spy_calls(translator, gate)
    answers: list = []

    def post():
        answers.append(client.post("/translate", json={"sentences": ["A dog."]}).status_code)

    with client:
        batcher = client.app.state.batcher
        first = threading.Thread(target=post)
        first.start()
        wait_until(lambda: len(calls) == 1, "the first request to be decoding")
        second = threading.Thread(target=post)
        second.start()
        wait_until(lambda: len(batcher) == 1, "the second request to be queued")
        busy = client.post("/translate", json={"sentences": ["A cat."]})
        health = client.get("/health").json()
        gate.set()
        first.join(WAIT_S)
        second.join(WAIT_S)
    assert busy.status_code == 503 and "--max-queue" in busy.json()["error"]
    assert busy.headers["retry-after"] == "1"
    assert health == {"status": "ok", "queue": 1, "max_queue": 1}
    assert answers == [200, 200] and len(calls) == 2


def test_concurrent_requests_share_translate_calls(run_dir, sentences):
    """While the first request decodes, the others queue up; they are then decoded in one
    call, each answer the same as its sentence translated alone."""
    client, translator = client_of(run_dir, batch_window_ms=0)
    gate = threading.Event()
    calls = spy_calls(translator, gate)
    n = 6
    answers: dict[int, list] = {}

    def post(i: int) -> None:
        answers[i] = client.post("/translate", json={"sentences": [sentences[i]]}).json()

    with client:
        threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        batcher = client.app.state.batcher
        # The first call may have taken more than one request (they can arrive before the
        # decoding thread wakes): wait until every request is in it or queued behind it.
        wait_until(lambda: len(calls) == 1 and calls[0][1] + len(batcher) == n, "the queue")
        gate.set()
        for t in threads:
            t.join(WAIT_S)
    assert len(calls) == 2 < n and sum(lines for _, lines, _ in calls) == n
    alone = reference(run_dir).translate(sentences[:n])
    assert [answers[i]["translations"][0][0]["text"] for i in range(n)] == alone


def test_workers_decode_a_large_call_in_forked_processes_like_one(
    run_dir, tiny_parallel, monkeypatch
):
    """--workers 2: a call holding several decoding batches is searched in processes forked
    from the decoding thread (the server has other threads), with the same results."""
    from nmt.search import translator as translator_module

    real, forked = translator_module.search_in_workers, []

    def spy(model, batches, cfg, workers, return_attention=False):
        forked.append((len(batches), workers))
        yield from real(model, batches, cfg, workers, return_attention)

    monkeypatch.setattr(translator_module, "search_in_workers", spy)
    lines = tiny_parallel["train_src"].read_text(encoding="utf-8").splitlines()[:64]
    served = load_served_model(run_dir, "cpu", workers=2)
    with TestClient(create_app(served, ServeSettings(max_batch_tokens=10_000))) as client:
        got = client.post("/translate", json={"sentences": lines})
    assert got.status_code == 200 and len(forked) == 1
    assert forked[0][0] > 1 and forked[0][1] == 2
    alone = reference(run_dir).translate(lines)
    assert [n[0]["text"] for n in got.json()["translations"]] == alone


def test_batch_threads_decode_a_large_call_in_threads_like_one(run_dir, tiny_parallel, monkeypatch):
    """--batch-threads 2: a call holding several decoding batches is searched in two threads
    of the decoding thread's process, with the same results; workers and threads together,
    or 0 threads, are refused at load."""
    from nmt.search import translator as translator_module

    real, threaded = translator_module.search_in_threads, []

    def spy(views, batches, cfg, return_attention=False):
        threaded.append((len(batches), len(views)))
        yield from real(views, batches, cfg, return_attention)

    monkeypatch.setattr(translator_module, "search_in_threads", spy)
    lines = tiny_parallel["train_src"].read_text(encoding="utf-8").splitlines()[:64]
    served = load_served_model(run_dir, "cpu", batch_threads=2)
    with TestClient(create_app(served, ServeSettings(max_batch_tokens=10_000))) as client:
        got = client.post("/translate", json={"sentences": lines})
    assert got.status_code == 200 and len(threaded) == 1
    assert threaded[0][0] > 1 and threaded[0][1] == 2
    alone = reference(run_dir).translate(lines)
    assert [n[0]["text"] for n in got.json()["translations"]] == alone
    with pytest.raises(ConfigError, match="--batch-threads must be at least 1"):
        load_served_model(run_dir, "cpu", batch_threads=0)
    with pytest.raises(ConfigError, match="--workers 1 or --batch-threads 1"):
        load_served_model(run_dir, "cpu", workers=2, batch_threads=2)


def test_health_and_models(run_dir):
    client, translator = client_of(run_dir)
    with client:
        health = client.get("/health").json()
        info = client.get("/models").json()
        page = client.get("/")
        head = client.head("/")
        script = client.get("/static/app.js")
    assert health == {"status": "ok", "queue": 0, "max_queue": 64}
    assert info["name"] == run_dir.name and info["checkpoint"].endswith("best.pt")
    assert info["scores"] == {"test_2016_flickr": {"bleu": 12.5, "chrf": 40.25}}
    assert info["model"]["cell"] == "gru" and info["model"]["attention"] == "bahdanau"
    assert info["model"]["hidden_dim"] == 16 and info["vocab"] == {"src": 120, "tgt": 120}
    assert info["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert info["decode"]["beam_size"] == 3 and info["limits"]["max_beam"] == 16
    assert page.status_code == 200 and 'id="translate"' in page.text
    assert head.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "/translate" in script.text


def test_a_decoding_error_is_a_json_500_and_the_server_goes_on(run_dir):
    served = load_served_model(run_dir, "cpu")
    real, failed = served.translator.translate_nbest, []

    @functools.wraps(real)
    def fail_once(lines, return_attention=False, **kwargs):
        if not failed:
            failed.append(True)
            raise RuntimeError("boom")
        return real(lines, return_attention, **kwargs)

    served.translator.translate_nbest = fail_once
    with TestClient(create_app(served), raise_server_exceptions=False) as client:
        broken = client.post("/translate", json={"sentences": ["A dog."]})
        fine = client.post("/translate", json={"sentences": ["A dog."]})
    assert broken.status_code == 500 and "RuntimeError" in broken.json()["error"]
    assert fine.status_code == 200


# --- the command line ---------------------------------------------------------------------


def test_cli_refuses_a_missing_run_folder_and_bad_limits(tmp_path, capsys):
    from nmt.cli import serve

    code, out, err = run_main(serve, [str(tmp_path / "nope")], capsys)
    one_line_error(code, err, "does not exist", out=out)
    code, out, err = run_main(serve, [str(tmp_path), "--max-queue", "0"], capsys)
    one_line_error(code, err, "--max-queue must be at least 1", out=out)
    code, out, err = run_main(serve, [str(tmp_path), "--port", "99999"], capsys)
    one_line_error(code, err, "--port must be from 0", out=out)


class NotPlainData:
    """A class a crafted checkpoint pickles: loading it would import and build this."""


def test_cli_refuses_a_checkpoint_that_is_not_weights_only(tmp_path, capsys):
    from nmt.cli import serve

    path = tmp_path / "crafted.pt"
    torch.save({"format_version": 1, "model": {}, "payload": NotPlainData()}, path)
    code, out, err = run_main(serve, [str(path)], capsys)
    one_line_error(code, err, "refused for safety", out=out)


def test_cli_warns_before_binding_beyond_this_machine_and_names_a_busy_port(
    run_dir, capsys, monkeypatch
):
    from nmt.cli import serve
    from nmt.serve import server

    taken = server.bind("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        monkeypatch.setattr(server, "is_loopback", lambda host: False)
        code, out, err = run_main(serve, [str(run_dir), "--port", port], capsys)
    finally:
        taken.close()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and "no authentication" in lines[0]
    assert lines[1].startswith("nmt: error: cannot listen on 127.0.0.1:") and "--port" in lines[1]


def test_is_loopback():
    from nmt.serve.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.org")


# --- the load test ------------------------------------------------------------------------


def test_load_test_measures_both_modes_and_the_table_shows_them(run_dir, sentences):
    from nmt.serve.loadtest import LoadPlan, format_serve_table, load_test
    from nmt.serve.server import background_server

    served = load_served_model(run_dir, "cpu")
    calls = spy_calls(served.translator)
    plan = LoadPlan(clients=(1, 4), requests=8, beam=2, timeout_s=WAIT_S)
    phase_starts = []

    def start(settings):
        phase_starts.append(len(calls))
        return background_server(create_app(served, settings))

    result = load_test(start, sentences, plan)
    rows = result["rows"]
    assert [(r["batching"], r["clients"]) for r in rows] == [
        ("on", 1),
        ("on", 4),
        ("off", 1),
        ("off", 4),
    ]
    assert all(r["requests"] == 8 and r["errors"] == 0 and r["sent_s"] > 0 for r in rows)
    assert all(0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert set(result["batching_factor"]) == {"1", "4"}
    assert all(cfg.beam_size == 2 for cfg, _, _ in calls)
    assert sum(lines for _, lines, _ in calls) == 4 * (8 + 1)  # each request and warm-up once
    unbatched = calls[phase_starts[1] :]
    assert len(unbatched) == 2 * (8 + 1) and all(lines == 1 for _, lines, _ in unbatched)
    table = format_serve_table(result)
    assert "| off | 4 | 8 |" in table and "| on | 1 | 8 |" in table
    assert "4 clients x" in table


@pytest.mark.slow
def test_bench_serve_end_to_end(run_dir, tmp_path, capsys):
    """nmt-bench --serve with a checkpoint: two real nmt-serve processes, JSON and table."""
    from nmt.cli import bench

    out = tmp_path / "serve.json"
    code, stdout, err = run_main(
        bench,
        ["--serve", "--checkpoint", str(run_dir), "--serve-requests", "4", "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out.read_text(encoding="utf-8"))
    assert len(result["rows"]) == 6 and all(r["errors"] == 0 for r in result["rows"])
    assert "| off | 32 | 4 |" in stdout and "batching factor" in stdout
