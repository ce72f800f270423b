"""Small models and the LightningModule that trains them."""

from lightning_cyclic.models.classifier import Classifier
from lightning_cyclic.models.cnn import CNN1D, CNN2D
from lightning_cyclic.models.mlp import MLP

__all__ = ["CNN1D", "CNN2D", "MLP", "Classifier"]
