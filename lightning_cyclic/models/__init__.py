"""Small models and the LightningModule that trains them."""

from lightning_cyclic.models.classifier import Classifier
from lightning_cyclic.models.cnn import CNN1D, CNN2D
from lightning_cyclic.models.mlp import MLP
from lightning_cyclic.models.resnet import ResNet

__all__ = ["CNN1D", "CNN2D", "MLP", "Classifier", "ResNet"]
