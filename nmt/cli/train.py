"""``nmt-train``: train a model; the run folder is Hydra's (``hydra.run.dir=...``).

Examples::

    nmt-train data=multi30k_en_fr train.max_minutes=10
    nmt-train -m model.cell=gru,lstm                  # one run folder per job
    nmt-train hydra.run.dir=runs/x train.resume=true  # continue runs/x/last.pt
    torchrun --nproc_per_node=2 -m nmt train ...      # data-parallel, see docs/training.md
"""

from __future__ import annotations

from omegaconf import DictConfig

from nmt.cli.common import hydra_app


def train(cfg: DictConfig) -> float:
    """Train and return the best validation metric (what Hydra sweepers optimize)."""
    from nmt.train.trainer import train as run_training

    return run_training(cfg)


main = hydra_app(train)

if __name__ == "__main__":
    main()
