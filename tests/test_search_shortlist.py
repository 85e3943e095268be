"""Lexical shortlists (nmt/search/lexical_table.py, nmt/search/shortlist.py): the table, the
candidate sets, the search view against the model's own step, the searches through it, the
checkpoint payload, the config checks and the CLI flags."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from conftest import step_by_step

from nmt.cli.decode_flags import add_decode_flags, decode_config
from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID, DecodeConfig
from nmt.config_checks import check_decode_config
from nmt.errors import ConfigError, NMTError
from nmt.models.quantize import quantize_for_cpu
from nmt.search import search
from nmt.search.ensemble import Ensemble
from nmt.search.lexical_table import (
    FILLER,
    LEXICAL_KEY,
    LexicalTable,
    build_lexical_table,
    frequency_order,
)
from nmt.search.shortlist import (
    Shortlist,
    ShortlistSeq2Seq,
    candidate_mask,
    shortlist_view,
)
from nmt.search.table_step import TableStepSeq2Seq, search_view
from nmt.search.translator import Translator
from tests.test_search_real_model import batch, tiny_model
from tests.test_search_table_step import _Digits

SRC_V, TGT_V = 23, 19  # tiny_model's vocabularies

# A hand-made corpus: source 4..7 = "the dog cat runs", target 4..8 = "le chien chat court ."
CORPUS = [
    ([4, 5, 7], [4, 5, 7, 8]),  # the dog runs -> le chien court .
    ([4, 6, 7], [4, 6, 7, 8]),  # the cat runs -> le chat court .
    ([4, 5], [4, 5, 8]),  # the dog -> le chien .
    ([4, 6], [4, 6, 8]),  # the cat -> le chat .
    ([5, 7], [5, 7, 8]),  # dog runs -> chien court .
]


def _table(k: int = 5) -> torch.Tensor:
    src, tgt = zip(*CORPUS)
    return build_lexical_table(list(src), [torch.tensor(t) for t in tgt], 9, 10, k=k)


def test_the_table_holds_the_obvious_translations_best_first():
    table = _table()
    assert table.shape == (9, 5) and table.dtype == torch.int32
    assert table[5, 0] == 5  # dog -> chien
    assert table[6, 0] == 6  # cat -> chat
    assert table[7, 0] == 7  # runs -> court
    assert table[4, 0] == 4  # the -> le
    # unseen source pieces (and the specials) are all filler; no special target id appears
    assert (table[:4] == FILLER).all() and (table[8] == FILLER).all()
    assert not ((table >= 0) & (table < 4)).any()
    # a source piece holds only pieces it met: 'cat' never met 'chien'
    assert 5 not in table[6].tolist()


def test_the_table_of_a_corpus_of_multi30k_size_finds_its_planted_translation():
    """29,000 random pairs with one planted translation (source piece 5 -> target piece 7
    in every tenth pair): the table is built at full size and puts 7 first for 5. No time
    bound: speed is measured in benchmarks, never asserted in tests."""
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(10, 4000, (12,), generator=g) for _ in range(29_000)]
    tgt = [torch.randint(10, 4000, (13,), generator=g) for _ in range(29_000)]
    for i in range(0, 29_000, 10):
        src[i][3], tgt[i][5] = 5, 7
    table = build_lexical_table(src, tgt, 4000, 4000)
    assert table.shape == (4000, 100)
    assert table[5, 0] == 7
    assert (table[10:, 0] != 7).float().mean() > 0.99  # 7 is no other piece's best


def _lexical() -> LexicalTable:
    """A table for tiny_model's vocabularies: source piece s -> target pieces s % 15 + 4."""
    table = torch.full((SRC_V, 3), FILLER, dtype=torch.int32)
    for s in range(4, SRC_V):
        table[s, 0] = s % 15 + 4
        table[s, 1] = (s + 3) % 15 + 4
    order = torch.tensor([10, 11, *[i for i in range(TGT_V) if i not in (10, 11)]])
    return LexicalTable(table, order.int())


def test_candidates_hold_the_table_rows_the_frequent_pieces_and_the_specials():
    shortlist = Shortlist.of(_lexical(), k=2, frequent=2)
    src = torch.tensor([[4, 5, 6], [9, PAD_ID, PAD_ID]])
    ids = shortlist.candidates(src, torch.tensor([3, 1]))
    mask = candidate_mask(ids)
    sets = [set(row[m].tolist()) for row, m in zip(ids, mask)]
    always = {EOS_ID, UNK_ID, 10, 11}
    assert sets[0] == always | {8, 11, 9, 12, 10, 13}  # 4 -> 8, 11; 5 -> 9, 12; 6 -> 10, 13
    assert sets[1] == always | {13, 16}  # 9 -> 13, 16; the padding brings nothing
    for row, m in zip(ids, mask):
        assert row[m].tolist() == sorted(row[m].tolist())  # sorted, distinct
        assert (row[~m] == row[m][-1]).all()  # padding repeats the last real id
    assert PAD_ID not in sets[0] and BOS_ID not in sets[0]


def test_a_damaged_or_mismatched_stored_table_is_one_clear_error():
    state = _lexical().state_dict()
    with pytest.raises(NMTError, match="lexical table"):
        LexicalTable.from_state_dict(state, SRC_V + 1, TGT_V)
    with pytest.raises(NMTError, match="lexical table"):
        LexicalTable.from_state_dict({"table": "x"}, SRC_V, TGT_V)
    again = LexicalTable.from_state_dict(state, SRC_V, TGT_V)
    assert torch.equal(again.table, state["table"])


class _Everything(Shortlist):
    """Every target id for every sentence (PAD and BOS included): the view must then equal
    the model."""

    def candidates(self, src, src_lengths):
        return torch.arange(self.vocab_size).expand(src.size(0), -1).clone()


def _everything() -> Shortlist:
    return _Everything(torch.zeros(SRC_V, 1, dtype=torch.long), torch.arange(0), TGT_V)


@pytest.mark.parametrize("table", [False, True])
def test_with_the_whole_vocabulary_the_view_steps_as_the_model(table):
    model = tiny_model(input_feeding=table)
    inner = search_view(model) if table else model
    assert isinstance(inner, TableStepSeq2Seq) == table
    view = ShortlistSeq2Seq(inner, _everything())
    src, lengths = batch()
    tokens = torch.randint(4, TGT_V, (src.size(0), 5), generator=torch.Generator().manual_seed(1))
    tokens[:, 0] = BOS_ID
    with torch.inference_mode():
        (steps_v, _), (steps_m, _) = (
            step_by_step(view, src, lengths, tokens),
            step_by_step(model, src, lengths, tokens),
        )
    for (lp_v, at_v), (lp_m, at_m) in zip(steps_v, steps_m):
        torch.testing.assert_close(lp_v, lp_m, atol=1e-5, rtol=0)
        torch.testing.assert_close(at_v, at_m, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,beam", [("greedy", 1), ("beam", 4)])
def test_with_the_whole_vocabulary_searches_find_the_same_hypotheses(method, beam):
    model = tiny_model(input_feeding=True)
    src, lengths = batch(n=8)
    cfg = DecodeConfig(method=method, beam_size=beam, n_best=beam, max_len_a=2.0)
    plain = search(model, src, lengths, cfg)
    through = search(shortlist_view(search_view(model), _everything()), src, lengths, cfg)
    for a, b in zip(plain, through):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


@pytest.mark.parametrize(
    "method,beam,n_best", [("greedy", 1, 1), ("beam", 4, 1), ("beam", 3, 3), ("sample", 1, 3)]
)
def test_every_output_token_is_among_its_sentences_candidates(method, beam, n_best):
    model = tiny_model()
    shortlist = Shortlist.of(_lexical(), k=1, frequent=1)
    src, lengths = batch(n=10, seed=2)
    cfg = DecodeConfig(method=method, beam_size=beam, n_best=n_best, max_len_a=2.0, min_len=1)
    view = shortlist_view(search_view(model), shortlist)
    ids = shortlist.candidates(src, lengths)
    allowed = [set(row.tolist()) for row in ids]
    results = search(view, src, lengths, cfg)
    for hyps, ok in zip(results, allowed):
        assert hyps
        for h in hyps:
            assert set(h.tokens) <= ok
    # the restriction is real: the plain model emits pieces outside the candidates
    plain = search(model, src, lengths, cfg)
    assert any(not set(h.tokens) <= ok for hyps, ok in zip(plain, allowed) for h in hyps)


def test_beam_results_do_not_depend_on_the_sentence_order():
    model = tiny_model(input_feeding=True)
    shortlist = Shortlist.of(_lexical(), k=2, frequent=2)
    src, lengths = batch(n=9, seed=4)
    cfg = DecodeConfig(method="beam", beam_size=3, n_best=2, max_len_a=2.0)
    view = shortlist_view(search_view(model), shortlist)
    first = search(view, src, lengths, cfg)
    perm = torch.randperm(src.size(0), generator=torch.Generator().manual_seed(5))
    again = search(view, src[perm], lengths[perm], cfg)
    for j, i in enumerate(perm.tolist()):
        assert [h.tokens for h in again[j]] == [h.tokens for h in first[i]]
        assert [h.score for h in again[j]] == pytest.approx([h.score for h in first[i]], abs=1e-4)
    # and one sentence alone decodes as inside the batch
    for i in range(3):
        alone = search(view, src[i : i + 1, : int(lengths[i])], lengths[i : i + 1], cfg)
        assert [h.tokens for h in alone[0]] == [h.tokens for h in first[i]]
        assert [h.score for h in alone[0]] == pytest.approx([h.score for h in first[i]], abs=1e-4)


def test_a_step_is_a_distribution_over_each_rows_candidates_only():
    model = tiny_model()
    shortlist = Shortlist.of(_lexical(), k=2, frequent=1)
    src, lengths = batch(n=7, seed=3)
    view = ShortlistSeq2Seq(search_view(model), shortlist)
    ids = shortlist.candidates(src, lengths)
    assert not candidate_mask(ids).all()  # rows of different sizes: padding is exercised
    with torch.inference_mode():
        enc = view.encode(src, lengths)
        prev = torch.full((src.size(0),), BOS_ID)
        log_probs, _, _ = view.step(prev, view.init_state(enc), enc)
    assert log_probs.shape == (src.size(0), TGT_V)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(src.size(0)))
    for row, allowed in zip(log_probs, ids):
        finite = set(torch.isfinite(row).nonzero().squeeze(1).tolist())
        assert finite == set(allowed.tolist())


def test_ensembles_and_int8_models_decode_through_the_shortlist():
    shortlist = Shortlist.of(_lexical(), k=1, frequent=1)
    src, lengths = batch(n=5)
    cfg = DecodeConfig(method="beam", beam_size=3, max_len_a=2.0)
    ensemble = Ensemble([tiny_model(seed=0), tiny_model(seed=1)]).eval()
    view = shortlist_view(search_view(ensemble), shortlist)
    assert all(isinstance(m, ShortlistSeq2Seq) for m in view.members)
    int8 = shortlist_view(search_view(quantize_for_cpu(tiny_model())), shortlist)
    allowed = [set(row.tolist()) for row in shortlist.candidates(src, lengths)]
    for model in (view, int8):
        for hyps, ok in zip(search(model, src, lengths, cfg), allowed):
            assert set(hyps[0].tokens) <= ok


def test_the_translator_decodes_through_the_shortlist_it_is_asked_for():
    model = tiny_model()
    tok = _Digits()
    cfg = DecodeConfig(method="beam", beam_size=3, shortlist=1, shortlist_frequent=1)
    lines = ["4 5 6", "9", "7 8 9 10 11"]
    with pytest.raises(NMTError, match="lexical table"):
        Translator(model, tok, tok, cfg).translate(lines)
    translator = Translator(model, tok, tok, cfg, lexical=_lexical())
    shortlist = translator.shortlist()
    for line, out in zip(lines, translator.translate_nbest(lines)):
        src = torch.tensor([tok.encode(line)])
        allowed = set(shortlist.candidates(src, torch.tensor([src.size(1)]))[0].tolist())
        assert out and set(out[0].tokens) <= allowed
    assert isinstance(translator._views[0], ShortlistSeq2Seq)
    assert shortlist.sizes([tok.encode(line) for line in lines])[1] == 4  # 13, 10, EOS, UNK
    off = Translator(model, tok, tok, dataclasses.replace(cfg, shortlist=0), lexical=_lexical())
    off.translate(lines)
    assert not isinstance(off._views[0], ShortlistSeq2Seq)


def test_shortlist_settings_are_checked():
    check_decode_config(DecodeConfig(shortlist=50, shortlist_frequent=0))
    for bad, key in (({"shortlist": -1}, "shortlist"), ({"shortlist": 101}, "shortlist")):
        with pytest.raises(ConfigError, match=f"decode.{key}="):
            check_decode_config(DecodeConfig(**bad))
    with pytest.raises(ConfigError, match="decode.shortlist_frequent=-1"):
        check_decode_config(DecodeConfig(shortlist_frequent=-1))
    with pytest.raises(ConfigError, match="between 1 and 3"):
        Shortlist.of(_lexical(), k=4)


def _flags(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_decode_flags(p)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(list(argv))


def test_the_shortlist_flags_set_the_decode_config():
    cfg = decode_config(DecodeConfig(), _flags("--shortlist", "50", "--shortlist-frequent", "20"))
    assert (cfg.shortlist, cfg.shortlist_frequent) == (50, 20)
    assert decode_config(DecodeConfig(shortlist=7), _flags()).shortlist == 7  # kept
    with pytest.raises(ConfigError, match="--shortlist 200"):
        decode_config(DecodeConfig(), _flags("--shortlist", "200"))


def test_evaluate_parses_the_shortlist_flag():
    from nmt.cli.evaluate import parse_args

    args = parse_args(["runs/x", "--shortlist", "50"])
    assert args.shortlist == 50 and args.shortlist_frequent is None


def test_frequency_order_puts_the_most_frequent_first():
    order = frequency_order([[5, 5, 6], [5, 7]], 9)
    assert order[:3].tolist() == [5, 6, 7] and sorted(order.tolist()) == list(range(9))


def test_a_checkpoint_keeps_its_table(tmp_path):
    from nmt.train.checkpoint import load_checkpoint, save_checkpoint

    lexical = _lexical()
    path = tmp_path / "x.pt"
    save_checkpoint(path, {"format_version": 1, "model": {}, LEXICAL_KEY: lexical.state_dict()})
    state = load_checkpoint(path)[LEXICAL_KEY]
    again = LexicalTable.from_state_dict(state, SRC_V, TGT_V)
    assert torch.equal(again.table, lexical.table)
    assert torch.equal(again.by_frequency, lexical.by_frequency)


def test_a_trained_run_stores_its_table_and_older_checkpoints_get_it_rebuilt(
    tiny_parallel, tmp_path, capsys
):
    from nmt import inference
    from nmt.cli import translate
    from nmt.data.prepare import prepare
    from nmt.train.checkpoint import load_checkpoint, save_checkpoint
    from nmt.train.run import train
    from tests.test_train_loop import make_cfg

    # validation decodes with the run's decode settings: through the shortlist here
    cfg = make_cfg(tiny_parallel, "train.max_steps=2", "decode.shortlist=5")
    train(cfg, out_dir=tmp_path)
    payload = load_checkpoint(tmp_path / "best.pt")
    model, src, tgt, run_cfg = inference.load_for_inference(tmp_path)
    stored = inference.load_lexical_table(tmp_path, run_cfg, src, tgt)
    assert torch.equal(stored.table, payload[LEXICAL_KEY]["table"])
    train_split = prepare(run_cfg).splits["train"]
    built = build_lexical_table(train_split.src, train_split.tgt, len(src), len(tgt))
    assert torch.equal(stored.table, built) and (built >= 0).any()

    # a checkpoint written before the table: it loads as before, and a shortlist rebuilds it
    del payload[LEXICAL_KEY]
    old = tmp_path / "old.pt"
    save_checkpoint(old, payload)
    again, *_ = inference.load_for_inference(old)
    for a, b in zip(again.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    rebuilt = inference.load_lexical_table(old, run_cfg, src, tgt)
    assert torch.equal(rebuilt.table, stored.table)
    assert torch.equal(rebuilt.by_frequency, stored.by_frequency)

    source = tmp_path / "in.en"
    source.write_text("A man in a red shirt.\nTwo dogs run.\n", encoding="utf-8")
    outs = []
    for extra in ([], ["--shortlist", "3", "--shortlist-frequent", "2"]):
        translate.main([str(old), "-i", str(source), "--quiet", "--greedy", *extra])
        outs.append(capsys.readouterr().out.splitlines())
    assert len(outs[0]) == len(outs[1]) == 2
    shortlist = Shortlist.of(stored, 3, 2)
    for line, text in zip(source.read_text().splitlines(), outs[1]):
        ids = torch.tensor([src.encode(line)])
        allowed = set(shortlist.candidates(ids, torch.tensor([ids.size(1)]))[0].tolist())
        assert set(tgt.encode(text)) <= allowed | {UNK_ID}
