"""Search's table-step view of a model (nmt/search/table_step.py) against the model's own step,
on the real ``build_model`` network, before and after ``load_state_dict``."""

from __future__ import annotations

import pytest
import torch
from conftest import step_by_step

from nmt.config import BOS_ID, DecodeConfig
from nmt.data.batching import pad
from nmt.search import search, table_step
from nmt.search.ensemble import Ensemble
from nmt.search.table_step import TableStepSeq2Seq, search_view
from nmt.search.translator import Translator
from tests.test_search_real_model import batch, tiny_model


def _assert_same_steps(a, b) -> None:
    (steps_a, state_a), (steps_b, state_b) = a, b
    for (lp_a, at_a), (lp_b, at_b) in zip(steps_a, steps_b):
        torch.testing.assert_close(lp_a, lp_b, atol=1e-5, rtol=0)
        torch.testing.assert_close(at_a, at_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(state_a.hidden, state_b.hidden, atol=1e-5, rtol=0)
    if state_a.feed is not None:
        torch.testing.assert_close(state_a.feed, state_b.feed, atol=1e-5, rtol=0)


def _tokens(n: int, steps: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(4, 19, (n, steps), generator=g)
    tokens[:, 0] = BOS_ID
    return tokens


@pytest.mark.parametrize("feed", [False, True])
def test_table_step_equals_the_model_step_also_after_load_state_dict(feed):
    model = tiny_model(input_feeding=feed)
    src, lengths = batch()
    tokens = _tokens(src.size(0))
    with torch.inference_mode():
        view = search_view(model)
        assert isinstance(view, TableStepSeq2Seq)
        _assert_same_steps(
            step_by_step(view, src, lengths, tokens), step_by_step(model, src, lengths, tokens)
        )

    # New weights (another seed, as a checkpoint would bring): a new view equals the new
    # plain step; the old view still holds the old table, so it must be rebuilt.
    model.load_state_dict(tiny_model(input_feeding=feed, seed=7).state_dict())
    with torch.inference_mode():
        plain = step_by_step(model, src, lengths, tokens)
        _assert_same_steps(step_by_step(search_view(model), src, lengths, tokens), plain)
        stale = step_by_step(view, src, lengths, tokens)[0][1][0]
        assert not torch.allclose(stale, plain[0][1][0], atol=1e-3)


@pytest.mark.parametrize("method,beam", [("greedy", 1), ("beam", 4)])
def test_searches_through_the_table_step_find_the_same_hypotheses(method, beam):
    model = tiny_model(input_feeding=True)
    src, lengths = batch(n=8)
    cfg = DecodeConfig(method=method, beam_size=beam, n_best=beam, max_len_a=2.0)
    plain = search(model, src, lengths, cfg)
    through_view = search(search_view(model), src, lengths, cfg)
    assert len(plain) == len(through_view) == src.size(0)
    for hyps_a, hyps_b in zip(plain, through_view):
        assert [h.tokens for h in hyps_a] == [h.tokens for h in hyps_b]
        assert [h.score for h in hyps_a] == pytest.approx([h.score for h in hyps_b], abs=1e-4)


@pytest.mark.parametrize(
    "why", ["lstm", "two layers", "training mode", "autocast", "vocabulary too large"]
)
def test_models_the_table_does_not_fit_keep_their_own_step(why, monkeypatch):
    model = {
        "lstm": lambda: tiny_model(cell="lstm"),
        "two layers": lambda: tiny_model(layers=2),
        "training mode": lambda: tiny_model().train(),
        "autocast": tiny_model,
        "vocabulary too large": tiny_model,
    }[why]()
    assert isinstance(search_view(tiny_model()), TableStepSeq2Seq)  # the control
    if why == "vocabulary too large":
        monkeypatch.setattr("nmt.search.table_step.TABLE_MAX_ELEMENTS", 19 * 48 - 1)
    if why == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert search_view(model) is model
    else:
        assert search_view(model) is model


def test_an_ensemble_gets_a_table_step_per_member():
    members = [tiny_model(seed=1), tiny_model(cell="lstm", seed=2)]
    ens = Ensemble(members)
    view = search_view(ens)
    assert isinstance(view.members[0], TableStepSeq2Seq) and view.members[0].model is members[0]
    assert view.members[1] is members[1]
    assert search_view(Ensemble([members[1]])).members[0] is members[1]
    src, lengths = batch()
    tokens = _tokens(src.size(0), steps=4)
    with torch.inference_mode():
        enc_a, enc_b = ens.encode(src, lengths), view.encode(src, lengths)
        state_a, state_b = ens.init_state(enc_a), view.init_state(enc_b)
        for t in range(tokens.size(1)):
            lp_a, _, state_a = ens.step(tokens[:, t], state_a, enc_a)
            lp_b, _, state_b = view.step(tokens[:, t], state_b, enc_b)
            torch.testing.assert_close(lp_a, lp_b, atol=1e-5, rtol=0)


class _Digits:
    """A toy vocabulary: "5 7 9" <-> [5, 7, 9]."""

    def encode(self, text: str) -> list[int]:
        return [int(w) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(i) for i in ids)


def test_a_translator_builds_its_view_once_and_a_new_one_sees_new_weights(monkeypatch):
    built = []
    real = table_step.TableStepSeq2Seq.__init__

    def counting(self, model):
        built.append(model)
        real(self, model)

    monkeypatch.setattr(table_step.TableStepSeq2Seq, "__init__", counting)
    model = tiny_model(input_feeding=True)
    lines = ["5 6 7", "8 9 10 11 12", "4 13"]
    cfg = DecodeConfig(method="beam", beam_size=3, max_len_a=2.0)
    translator = Translator(model, _Digits(), _Digits(), cfg)
    first = translator.translate(lines)
    assert translator.translate(lines) == first and len(built) == 1  # made once, kept

    model.load_state_dict(tiny_model(input_feeding=True, seed=7).state_dict())
    fresh = Translator(model, _Digits(), _Digits(), cfg).translate(lines)
    src = [[int(w) for w in line.split()] for line in lines]
    plain = search(model, *pad(src), cfg)  # the model's own step on the new weights
    assert fresh == [" ".join(map(str, hyps[0].tokens)) for hyps in plain]
    assert fresh != first and len(built) == 2
