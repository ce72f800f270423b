"""Small models and the LightningModule that trains them."""

from lightning_cyclic.models.classifier import Classifier
from lightning_cyclic.models.mlp import MLP

__all__ = ["MLP", "Classifier"]
