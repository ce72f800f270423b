"""Train a model with a learning-rate schedule: ``python train.py schedule=onecycle``."""

import hydra
from omegaconf import DictConfig

from lightning_cyclic.run import main as run
from lightning_cyclic.sweeps import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
