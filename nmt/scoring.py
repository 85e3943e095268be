"""Corpus-level BLEU, chrF and TER from sacreBLEU, each with its signature.

Detokenized output against raw references is the default (sacreBLEU's own tokenization),
which is what should be reported. ``moses_lc_tok=True`` adds ``bleu_lc_tok``: output and
references lowercased and Moses-tokenized (sacremoses, ``lang``), then BLEU with
``tokenize=none`` -- the number the Multi30k / WMT multimodal literature publishes, which is
not comparable with detokenized BLEU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.errors import DataError

METRICS = ("bleu", "chrf", "ter")


def score(
    hyps: Sequence[str],
    refs_list: Sequence[Sequence[str]],
    lowercase: bool = False,
    tokenize: str | None = None,
    metrics: Sequence[str] = METRICS,
    moses_lc_tok: bool = False,
    lang: str = "fr",
    hyp_name: str | None = None,
    ref_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score ``hyps`` against one or more reference streams.

    Args:
        hyps: one detokenized hypothesis per sentence.
        refs_list: reference streams, each as long as ``hyps``.
        lowercase, tokenize: sacreBLEU's BLEU options (as its command line's ``--lowercase``
            and ``--tokenize``; None = sacreBLEU's default ``13a``).
        metrics: any of ``bleu``, ``chrf``, ``ter``.
        moses_lc_tok: also compute ``bleu_lc_tok`` (see the module docstring).
        lang: language of the Moses tokenizer.
        hyp_name, ref_names: the files the streams came from, named in errors.
    Returns:
        ``{metric: value, metric + "_signature": str, ...}`` plus ``n_sentences``.
    Raises:
        DataError: a reference stream's length differs from the hypotheses', or there is
            nothing to score (no hypotheses and no reference lines).
    """
    hyps = [h.rstrip("\n") for h in hyps]
    refs = [[r.rstrip("\n") for r in stream] for stream in refs_list]
    if not refs:
        raise DataError("no references given: pass at least one reference file (-r)")
    if not hyps and not any(refs):
        if hyp_name is None or ref_names is None:
            raise DataError("the hypotheses and references hold no lines: nothing to score")
        plural = "s" if len(ref_names) > 1 else ""
        raise DataError(
            f"hypothesis file {hyp_name} and reference file{plural} {', '.join(ref_names)} "
            "hold no lines: nothing to score"
        )
    for i, stream in enumerate(refs):
        if len(stream) != len(hyps):
            if hyp_name is None or ref_names is None:
                what = f"reference stream {i + 1} has {len(stream)} lines but there are {len(hyps)} hypotheses"
            else:
                what = (
                    f"reference file {ref_names[i]} has {len(stream)} lines but hypothesis "
                    f"file {hyp_name} has {len(hyps)}"
                )
            raise DataError(f"{what}: every reference file needs one line per hypothesis")
    scorers = {
        "bleu": lambda: BLEU(lowercase=lowercase, tokenize=tokenize),
        "chrf": CHRF,
        "ter": TER,
    }
    out: dict[str, Any] = {"n_sentences": len(hyps)}
    for name in metrics:
        if name not in scorers:
            raise DataError(f"unknown metric {name!r}: use bleu, chrf or ter")
        metric = scorers[name]()
        out[name] = round(metric.corpus_score(hyps, refs).score, 4)
        out[f"{name}_signature"] = str(metric.get_signature())
    if moses_lc_tok:
        out.update(moses_bleu(hyps, refs, lang))
    return out


def moses_bleu(
    hyps: Sequence[str], refs_list: Sequence[Sequence[str]], lang: str
) -> dict[str, Any]:
    """Lowercased, Moses-tokenized BLEU (``tokenize=none``): ``bleu_lc_tok`` and its signature."""
    from sacremoses import MosesTokenizer

    tok = MosesTokenizer(lang=lang)

    def prep(line: str) -> str:
        return tok.tokenize(line.lower(), return_str=True, escape=False)

    # force: the input is tokenized on purpose (no "forgot to detokenize" warning).
    metric = BLEU(tokenize="none", lowercase=True, force=True)
    result = metric.corpus_score([prep(h) for h in hyps], [[prep(r) for r in s] for s in refs_list])
    return {
        "bleu_lc_tok": round(result.score, 4),
        "bleu_lc_tok_signature": f"{metric.get_signature()}|lc+moses-tok:{lang}",
    }


def format_scores(scores: dict[str, Any]) -> str:
    """Human-readable lines: ``BLEU = 35.12  (signature)``."""
    lines = []
    for name in (*METRICS, "bleu_lc_tok"):
        if name in scores:
            label = (
                "BLEU (lc, Moses-tok)"
                if name == "bleu_lc_tok"
                else name.upper().replace("CHRF", "chrF")
            )
            lines.append(f"{label} = {scores[name]:.2f}  ({scores[name + '_signature']})")
    return "\n".join(lines)
