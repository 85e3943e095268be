"""nmt-train: train a translation model (or the character LM) and keep its checkpoints.

The run folder (hydra.run.dir, default runs/<name>/<time>) receives best.pt, last.pt,
metrics.jsonl, train.log, curves.png and .hydra/config.yaml; the data is prepared first
when its cache is missing. Returns the best validation metric (for Hydra sweepers).

Examples:
  nmt-train data=multi30k_en_fr train.max_minutes=10
  nmt-train model=lstm embeddings=pretrained hydra.run.dir=runs/lstm
  nmt-train hydra.run.dir=runs/lstm train.resume=true train.max_steps=20000   # continue
  nmt-train --config-dir recipes/quickstart --config-name quickstart          # a recipe
  nmt-train -m model.cell=gru,lstm                   # one run folder per job
  torchrun --nproc_per_node=2 -m nmt train ...       # data-parallel, see docs/training.md
"""

from __future__ import annotations

from omegaconf import DictConfig

from nmt.cli.common import hydra_app
from nmt.train.run import train as run_training


def train(cfg: DictConfig) -> float:
    """Train and return the best validation metric (what Hydra sweepers optimize)."""
    return run_training(cfg)


main = hydra_app(train, "nmt-train")

if __name__ == "__main__":
    main()
