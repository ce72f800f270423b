"""Train a model with a learning-rate schedule: ``python train.py schedule=onecycle``.

The configs are the package's (``lightning_cyclic/conf``); ``lightning-cyclic train`` is the same app, installed.
"""

from omegaconf import DictConfig

from lightning_cyclic.run import hydra_app
from lightning_cyclic.run import main as run


@hydra_app  # @hydra.main on the package's configs, for the Hydra installed
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
