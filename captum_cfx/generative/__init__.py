"""The counterfactual generator: networks, the five loss groups, and the training loop."""

from captum_cfx.generative.config import GeneratorConfig
from captum_cfx.generative.networks import ConceptClassifier, Discriminator, Generator
from captum_cfx.generative.presets import Preset
from captum_cfx.generative.trainer import CounterfactualTrainer

__all__ = [
    "ConceptClassifier",
    "CounterfactualTrainer",
    "Discriminator",
    "Generator",
    "GeneratorConfig",
    "Preset",
]
