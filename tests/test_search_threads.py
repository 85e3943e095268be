"""Decoding batches in parallel threads of one process (decode.batch_threads,
nmt.search.threads): same translations as one search at a time, one view per thread, the
caller's grad mode and torch thread count kept, errors and early stops handled."""

from __future__ import annotations

import dataclasses
import itertools
import threading

import pytest
import torch

from nmt.config import DecodeConfig
from nmt.config_checks import check_decode_config
from nmt.errors import ConfigError
from nmt.search import threads as threads_module
from nmt.search.shortlist import ShortlistSeq2Seq
from nmt.search.table_step import search_view
from nmt.search.threads import search_in_threads, torch_threads_per_batch_thread
from nmt.search.translator import Translator
from nmt.search.workers import Job
from tests.test_search_real_model import tiny_model
from tests.test_search_shortlist import _lexical
from tests.test_search_table_step import _Digits

# 24 lines of 1-9 source pieces in batches of 2: 12 batches for the threads to share.
LINES = [" ".join(str(4 + (7 * i + 3 * j) % 19) for j in range(1 + i % 9)) for i in range(24)]


def _config(**kw) -> DecodeConfig:
    return DecodeConfig(method="beam", beam_size=3, n_best=2, max_sentences=2, **kw)


@pytest.fixture
def spied(monkeypatch):
    """Every search the threads run: (thread name, id of its model, torch threads, grad on,
    inference mode on)."""
    seen: list[tuple[str, int, int, bool, bool]] = []
    real = threads_module.search

    def spy(model, *args, **kwargs):
        seen.append(
            (
                threading.current_thread().name,
                id(model),
                torch.get_num_threads(),
                torch.is_grad_enabled(),
                torch.is_inference_mode_enabled(),
            )
        )
        return real(model, *args, **kwargs)

    monkeypatch.setattr(threads_module, "search", spy)
    return seen


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shortlist", [0, 2])
def test_two_threads_translate_like_one_search_at_a_time(shortlist, spied, two_torch_threads):
    model = tiny_model(input_feeding=True)
    lexical = _lexical() if shortlist else None
    one = Translator(
        model, _Digits(), _Digits(), _config(shortlist=shortlist), lexical=lexical
    ).translate_nbest(LINES, return_attention=True)
    assert not spied  # batch_threads=1 searches in this thread
    threaded = Translator(
        model, _Digits(), _Digits(), _config(shortlist=shortlist, batch_threads=2), lexical=lexical
    )
    with torch.no_grad():
        two = threaded.translate_nbest(LINES, return_attention=True)
    assert [[t.tokens for t in n] for n in two] == [[t.tokens for t in n] for n in one]
    assert len(set(tuple(n[0].tokens) for n in one)) > 10  # the lines really differ
    for a, b in zip(itertools.chain(*one), itertools.chain(*two)):
        assert b.score == pytest.approx(a.score, abs=1e-5)
        torch.testing.assert_close(b.attention, a.attention, atol=1e-5, rtol=0)
    # 12 batches, all searched in the pool's threads, each with 1 of the 2 torch threads
    # and the caller's grad mode (off), each thread always with its own view.
    assert len(spied) == 12
    assert all(name.startswith("nmt-decode") for name, *_ in spied)
    assert {(n, g, i) for _, _, n, g, i in spied} == {(1, False, False)}
    view_of = {name: view for name, view, *_ in spied}
    assert len({(name, view) for name, view, *_ in spied}) == len(view_of)  # one per thread
    if shortlist:  # no two threads share a view that has scratch buffers
        assert len(set(view_of.values())) == len(view_of)
    # The caller's torch thread count is back, and the views are kept for the next call.
    assert torch.get_num_threads() == 2
    views = list(threaded._views)
    assert len(views) == 2
    if shortlist:
        assert all(isinstance(v, ShortlistSeq2Seq) for v in views)
        assert views[0].inner is views[1].inner  # the GRU gate table is made once, shared
    else:
        assert views[0] is views[1] is threaded._base_view  # nothing per search: shared
    threaded.translate(LINES[:4])
    assert threaded._views == views


def test_the_threads_take_the_callers_inference_mode(spied):
    translator = Translator(tiny_model(), _Digits(), _Digits(), _config(batch_threads=2))
    with torch.inference_mode():
        translator.translate(LINES[:6])
    assert {i for *_, i in spied} == {True}


def test_a_failing_batch_raises_in_the_caller_and_the_thread_count_comes_back(
    monkeypatch, two_torch_threads
):
    real = threads_module.search

    def broken(model, src, *args, **kwargs):
        if src.size(0) == 1:
            raise RuntimeError("batch broke")
        return real(model, src, *args, **kwargs)

    monkeypatch.setattr(threads_module, "search", broken)
    view = search_view(tiny_model())
    jobs = [Job([[5, 6], [7]]), Job([[8]]), Job([[9, 10], [11, 12]])]
    with torch.no_grad(), pytest.raises(RuntimeError, match="batch broke"):
        list(search_in_threads([view, view], jobs, _config()))
    assert torch.get_num_threads() == 2


def test_stopping_early_drops_the_remaining_batches(spied, two_torch_threads):
    view = search_view(tiny_model())
    jobs = [Job([[4 + i, 5 + i]]) for i in range(10)]
    with torch.no_grad():
        results = search_in_threads([view, view], jobs, _config())
        key, nbest = next(results)
        results.close()
    assert 0 <= key < 10 and len(nbest) == 1 and nbest[0]
    assert len(spied) < 10  # the pool did not go on through every batch
    assert torch.get_num_threads() == 2


def test_batch_threads_settings_are_checked_and_gpus_fall_back_to_one():
    check_decode_config(DecodeConfig(batch_threads=4))
    with pytest.raises(ConfigError, match="decode.batch_threads=0 must be at least 1"):
        check_decode_config(DecodeConfig(batch_threads=0))
    with pytest.raises(ConfigError, match="workers=2 and decode.batch_threads=2"):
        check_decode_config(DecodeConfig(workers=2, batch_threads=2))
    warnings: list[str] = []
    gpu = Translator(None, None, None, DecodeConfig(batch_threads=2), "cuda", warn=warnings.append)
    assert gpu.batch_threads() == 1 and gpu.batch_threads() == 1
    assert len(warnings) == 1 and "decode.batch_threads=2" in warnings[0]
    cpu = Translator(None, None, None, DecodeConfig(batch_threads=3))
    assert cpu.batch_threads() == 3
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast's state is per thread
        assert cpu.batch_threads() == 1


def test_each_thread_gets_its_share_of_the_torch_threads():
    assert torch_threads_per_batch_thread(2, 2) == 1
    assert torch_threads_per_batch_thread(2, 8) == 4
    assert torch_threads_per_batch_thread(3, 8) == 2
    assert torch_threads_per_batch_thread(4, 2) == 1  # never 0


def test_a_translator_with_one_batch_searches_in_the_calling_thread(spied):
    translator = Translator(
        tiny_model(), _Digits(), _Digits(), dataclasses.replace(_config(), batch_threads=2)
    )
    assert translator.translate(LINES[:2])  # one batch of 2: nothing to share
    assert not spied
