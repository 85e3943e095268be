"""nmt-prepare: download (or copy from the mirror), clean, tokenize and cache a corpus.

Prints a summary table (pairs read, kept and dropped by reason, piece lengths, vocabulary)
and returns the number of training pairs kept (characters for the character corpus). The
files land in the cache (data.cache_dir, default .nmt_cache), so nmt-train finds them
later, with or without the mirror; no run folder is kept.

Examples:
  nmt-prepare data=multi30k_en_fr
  NMT_DATA_MIRROR=../shared/data nmt-prepare data=tatoeba_en_fr
  nmt-prepare data=local data.local.train_src=train.en data.local.train_tgt=train.fr \\
      data.local.valid_src=val.en data.local.valid_tgt=val.fr tokenizer.vocab_size=2000
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from nmt.cli.common import hydra_app
from nmt.data.datasets import TEXT
from nmt.data.prepare import prepare, prepare_text


def prepare_main(cfg: DictConfig) -> int:
    """Prepare the configured corpus and print its summary."""
    start = time.perf_counter()
    if cfg.data.name in TEXT:
        text = prepare_text(cfg)
        print(text.summary())
        kept = len(text.train)
    else:
        data = prepare(cfg)
        print(data.summary())
        kept = len(data.splits["train"])
        missing = [s for s in cfg.data.test_splits if s not in data.splits]
        if missing:
            print(
                f"note: data.test_splits lists {', '.join(missing)}, which this corpus does not have"
            )
    print(f"prepared in {time.perf_counter() - start:.1f} s")
    return kept


main = hydra_app(prepare_main, "nmt-prepare")

if __name__ == "__main__":
    main()
