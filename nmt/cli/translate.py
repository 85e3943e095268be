"""``nmt-translate RUN_DIR_OR_CHECKPOINT [-i IN] [-o OUT] [options]``: raw text in, text out.

Reads stdin and writes stdout unless ``-i`` / ``-o`` are given, so it works in pipes. Every
input line gives exactly one output line (an empty input line gives an empty line). With
``--n-best N`` every input line gives N lines ``INDEX ||| TRANSLATION ||| SCORE`` (INDEX is
the input line number counted from 1, as sacreBLEU and attention plots count lines; best
first; an empty input gives N empty translations). Beam search keeps at least N hypotheses
(``--n-best 5 --beam 2`` searches with beam 5, and says so); ``--sample`` draws N samples
(duplicates possible); greedy search finds one translation, so it refuses ``--n-best`` > 1.
A run folder resolves to its ``best.pt`` (else ``last.pt``). Search options default to the
checkpoint's ``decode`` config (every ``DecodeConfig`` field has a flag:
``nmt/cli/decode_flags.py``). Progress (files only) and a timing line go to stderr unless
``--quiet``.

Input is read whole and translated in length-sorted batches, unless ``--interactive`` (the
default when no ``-i`` is given and stdin is a terminal): then each line is translated when it
arrives and its rows are flushed at once (``nmt/cli/streaming.py``), so a producer that waits
for each answer before writing its next line works; the model is loaded once, before.

``--alignments`` adds word alignments from attention (``nmt/search/alignment.py``): Pharaoh
``i-j`` links, source word i to output word j, both counted from 0, words being the
space-separated words of the input line and of the output line; each output word is linked to
the source word holding most of its attention. ``--alignments -`` appends `` ||| i-j ...`` to
every output row (n-best rows too); ``--alignments FILE`` writes one line of links per output
row to FILE instead. Models without attention refuse it.

``--prefix FILE`` gives each input line a target prefix (its line in FILE; an empty line for
none): the translation starts with it, then the search continues it. ``--terms FILE``
(``source<TAB>target`` per line) makes beam search put the target term of every source term
found in a line (whole words, any case) into its translation (``nmt/search/terminology.py``,
``nmt/search/lexical_constraints.py``); greedy search and sampling refuse terms. Both need
the whole input at once (not ``--interactive``).

``--quantize int8`` decodes on the CPU with the model's per-step layers in int8
(``nmt/models/quantize.py``; ``--device auto`` means cpu, ``--device cuda`` is refused).
``--shortlist K`` cuts each sentence's output layer to its lexical shortlist
(``nmt/search/shortlist.py``; a checkpoint without a lexical table gets it rebuilt from its
run's training data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nmt.cli import make_parser
from nmt.cli.common import run_guarded
from nmt.cli.decode_flags import add_decode_flags, decode_config
from nmt.cli.streaming import Done, stdin_is_terminal, translate_streaming
from nmt.cli.translate_rows import APPEND, line_rows
from nmt.data.readers import read_text_lines
from nmt.devices import resolve_device
from nmt.errors import ConfigError
from nmt.inference import has_attention, load_lexical_table, load_translation_model
from nmt.outputs import check_output_file, check_output_folder, write_text
from nmt.quantize_scheme import quantize_device
from nmt.search.plots import plot_attention_maps
from nmt.search.terminology import TermTable
from nmt.search.translator import Translator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "nmt-translate",
        "Translate raw text with a trained nmt checkpoint: one output line per input line.",
        [
            "nmt-translate runs/quickstart -i test.en -o test.hyp.fr",
            'echo "A dog runs on the beach." | nmt-translate runs/quickstart',
            "nmt-translate runs/x -i in.en --n-best 5 --beam 5      # INDEX ||| TEXT ||| SCORE",
            "nmt-translate runs/x -i in.en --attention-plot plots/ --plot-count 3",
            "nmt-translate runs/a -i in.en --ensemble runs/b/best.pt runs/c/best.pt",
            "nmt-translate runs/x --interactive    # each line answered (and flushed) as it comes",
            "nmt-translate runs/x -i in.en --alignments -   # TEXT ||| 0-0 1-2 2-1 (src-out words)",
            "nmt-translate runs/x -i in.en --quantize int8  # int8 weights on the CPU",
            "nmt-translate runs/x -i in.en --shortlist 50   # output layer cut to a shortlist",
        ],
    )
    p.add_argument("checkpoint", help="a run folder (uses best.pt, else last.pt) or a .pt file")
    p.add_argument("-i", "--input", help="input text file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    add_decode_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing line")
    p.add_argument(
        "--attention-plot",
        metavar="DIR",
        help="write attention heatmaps DIR/attention_<line number>.png (models with attention)",
    )
    p.add_argument("--plot-count", type=int, default=5, help="sentences to plot (default 5)")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT", help="more checkpoints")
    p.add_argument(
        "--interactive",
        action="store_true",
        help="translate each line as it arrives and flush its output at once (default when "
        "stdin is a terminal and no -i is given)",
    )
    p.add_argument(
        "--alignments",
        metavar="FILE|-",
        help="word alignments from attention, 'i-j' = source word i to output word j (from 0): "
        "'-' appends ' ||| i-j ...' to each output row, FILE gets one line per output row",
    )
    p.add_argument(
        "--prefix",
        metavar="FILE",
        help="target prefixes, one per input line (an empty line for none): each "
        "translation starts with its line's prefix, then the search continues it",
    )
    p.add_argument(
        "--terms",
        metavar="FILE",
        help="terminology, 'source<TAB>target' per line: where a source term occurs in a line "
        "(whole words, any case) its target term must appear in the translation (beam search)",
    )
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    """Refuse command-line values that cannot work, before anything is loaded.

    Raises:
        ConfigError: naming the option and what to use.
    """
    if args.max_src_len < 1:
        raise ConfigError(
            f"--max-src-len must be at least 1 (got {args.max_src_len}): it is the number of "
            "source pieces kept per line, and 0 would translate every line to nothing"
        )
    if args.plot_count < 1:
        raise ConfigError(f"--plot-count must be at least 1 (got {args.plot_count})")
    guided = "--prefix" if args.prefix else "--terms" if args.terms else None
    if guided and (args.interactive or (args.input is None and stdin_is_terminal())):
        raise ConfigError(
            f"{guided} needs the whole input at once: give it with -i FILE (or a pipe), "
            "without --interactive"
        )


def read_prefixes(path: str | None, n_lines: int) -> list[str] | None:
    """``--prefix FILE``: one target prefix per input line (an empty line for none).

    Raises:
        ConfigError: the file's line count differs from the input's.
    """
    if path is None:
        return None
    prefixes = read_text_lines(path, "--prefix file")
    if len(prefixes) != n_lines:
        raise ConfigError(
            f"--prefix {path} has {len(prefixes)} lines but the input has {n_lines}: give one "
            "prefix per input line (an empty line for none)"
        )
    return prefixes


def note_missing_attention(args: argparse.Namespace, model) -> None:
    """Say why ``--attention-plot`` will write nothing for a model without attention."""
    if args.attention_plot and not args.quiet and not has_attention(model):
        members = " and its ensemble members have" if args.ensemble else " has"
        print(
            f"nmt: note: no attention plots will be written to {args.attention_plot}: "
            f"{args.checkpoint}{members} no attention (model.attention=none)",
            file=sys.stderr,
        )


def check_alignments(args: argparse.Namespace, model) -> None:
    """Refuse ``--alignments`` for a model without attention, before anything is translated."""
    if args.alignments and not has_attention(model):
        members = " and its ensemble members have" if args.ensemble else " has"
        raise ConfigError(
            f"--alignments reads attention weights, and {args.checkpoint}{members} no "
            "attention (model.attention=none): drop --alignments or use a model with attention"
        )


def run(args: argparse.Namespace) -> None:
    check_options(args)
    check_outputs(args)
    device = resolve_device(quantize_device(args.quantize, args.device), "--device")
    model, src_tok, tgt_tok, base, ckpt_cfg = load_translation_model(
        args.checkpoint, args.ensemble, device, args.quantize
    )
    note_missing_attention(args, model)
    check_alignments(args, model)
    cfg = decode_config(base, args)
    lexical = None
    if cfg.shortlist > 0:  # the first checkpoint's table: ensemble members share its vocabularies
        lexical = load_lexical_table(args.checkpoint, ckpt_cfg, src_tok, tgt_tok)
    translator = Translator(
        model, src_tok, tgt_tok, cfg, device, max_src_len=args.max_src_len, lexical=lexical
    )
    if args.interactive or (args.input is None and stdin_is_terminal()):
        done = translate_streaming(args, translator)
    else:
        done = translate_batch(args, translator)

    if args.attention_plot and has_attention(model):  # else note_missing_attention said why
        written = plot_attention_maps(
            translator,
            done.plot_lines,
            done.plot_results,
            Path(args.attention_plot),
            args.plot_count,
        )
        if not args.quiet:
            print(f"nmt: wrote {written} attention plots to {args.attention_plot}", file=sys.stderr)
    if not args.quiet:
        rate = done.lines / done.seconds if done.seconds > 0 else float("inf")
        print(
            f"nmt: translated {done.lines} lines in {done.seconds:.2f}s ({rate:.1f} sentences/s, "
            f"{done.tokens / max(done.seconds, 1e-9):.0f} target tokens/s, {cfg.method}"
            f"{' ' + str(cfg.beam_size) if cfg.method == 'beam' else ''}, {device}"
            f"{' ' + args.quantize if args.quantize else ''})",
            file=sys.stderr,
        )


def translate_batch(args: argparse.Namespace, translator: Translator) -> Done:
    """The whole input, read first, in length-sorted batches; the output written at the end."""
    lines = read_text_lines(args.input, "input file")
    prefixes = read_prefixes(args.prefix, len(lines))
    terms = TermTable.from_file(args.terms) if args.terms else None
    bar = None
    if args.input and not args.quiet and sys.stderr.isatty():  # no \r bars in a log file
        bar = tqdm(total=len(lines), unit="sent", file=sys.stderr, leave=False)
    start = time.perf_counter()
    with torch.inference_mode():
        results = translator.translate_nbest(
            lines,
            return_attention=bool(args.alignments),
            progress=bar.update if bar else None,
            prefixes=prefixes,
            terms=terms,
        )
    done = Done(len(lines), sum(len(r[0].tokens) for r in results if r))
    done.seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    rows, links = [], []
    for i, (line, result) in enumerate(zip(lines, results)):
        out, aligned = line_rows(
            translator, i, line, result, translator.cfg.n_best, args.alignments
        )
        rows += out
        links += aligned
    if args.alignments and args.alignments != APPEND:
        write_text(args.alignments, "".join(link + "\n" for link in links), "--alignments file")
    write_output(rows, args.output)
    if args.attention_plot:
        # Attention is kept only for the plotted sentences (keeping it for every
        # hypothesis of a whole file made beam search several times slower).
        done.plot_lines = lines[: args.plot_count]
        done.plot_results = results[: args.plot_count]
        if not args.alignments:
            with torch.inference_mode():
                done.plot_results = translator.translate_nbest(
                    done.plot_lines,
                    True,
                    prefixes=prefixes[: args.plot_count] if prefixes else None,
                    terms=terms,
                )
    return done


def check_outputs(args: argparse.Namespace) -> None:
    """Every output is writable, and none is an input, before anything is loaded."""
    inputs = [path for path in (args.input, args.prefix, args.terms) if path]
    if args.output:
        check_output_file(args.output, "-o/--output", inputs)
    if args.attention_plot:
        check_output_folder(args.attention_plot, "--attention-plot")
    if args.alignments and args.alignments != APPEND:
        outputs = [args.output] if args.output else []
        check_output_file(args.alignments, "--alignments", inputs + outputs)


def write_output(lines: list[str], path: str | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if path is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `| head`: the reader left, which is not an error
            sys.stderr.close()
        return
    write_text(path, text)  # a temporary renamed at the end: never a half-written file


def main(argv: list[str] | None = None) -> None:
    run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    main()
