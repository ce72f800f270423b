"""Train a model with a learning-rate schedule: ``python train.py schedule=onecycle``.

The configs are the package's (``lightning_cyclic/conf``); ``lightning-cyclic train`` is the same app, installed.
"""

import hydra
from omegaconf import DictConfig

from lightning_cyclic.run import main as run


@hydra.main(version_base="1.3", config_path="pkg://lightning_cyclic.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
