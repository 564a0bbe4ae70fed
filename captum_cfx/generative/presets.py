"""Named recipes for the data sets that measured better with another setting than the default.

``GeneratorConfig()`` is the recipe for data nobody tuned for. A data set whose table cells
were measured with other settings gets a :class:`Preset` here, which carries the settings, the
metrics they reached, and the command that measured them (as torchvision's weight enums carry
their recipe and metrics), so a user can reproduce a table row by name::

    explainer = CounterfactualAnomalyExplainer(n_concepts=2, config=Preset.COLORED_MNIST.config)

and ``captum-cfx fit --preset colored_mnist`` does the same from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping

from captum_cfx.generative.config import GeneratorConfig

#: What every preset's metrics were measured with: the library before L_phi's steepness gain,
#: which now multiplies ``lambda_phi`` by the detector's gain (docs/method.rst).
MEASURED_BEFORE_GAIN = (
    "x86_64 CPU, one torch thread, no GPU, torch 2.14.1; the library before L_phi's "
    "steepness gain (2026-12-07), which now multiplies lambda_phi by the detector's gain"
)
_ROUTES = ("global", "shape")


@dataclass(frozen=True)
class Recipe:
    """A preset's content.

    Attributes:
        overrides: the ``GeneratorConfig`` fields that differ from the default.
        data: the data and detectors it was measured on.
        metrics: per detector, normality AuROC (%), validity (%) and FIDN, each the mean over
            ``runs`` table cells of ``benchmarks/results/paper_tables.json``.
        runs: table cells per detector (normal classes or seeds).
        command: the benchmark command per cell, from the repository's root.
        measured: date, machine and library.
    """

    overrides: Mapping[str, Any]
    data: str
    metrics: Mapping[str, Mapping[str, float]]
    runs: int
    command: str
    measured: str


def _recipe(overrides: Mapping[str, Any], **meta: Any) -> Recipe:
    return Recipe(overrides=MappingProxyType(dict(overrides)), **meta)


class Preset(Enum):
    """The named recipes, each with the metrics and command of the table cells it reached.

    Examples::

        >>> from captum_cfx import Preset
        >>> Preset.COLORED_MNIST.config.concept_routes
        ('global', 'shape')
        >>> Preset.from_name("mnist_flat_detector").config.lambda_phi
        10.0
    """

    #: One-vs-rest MNIST with a detector whose logits are flat (HSC-OE, Deep SVDD): L_phi ten
    #: times stronger, against the reconstruction terms that hold G at the identity.
    MNIST_FLAT_DETECTOR = _recipe(
        {"lambda_phi": 10.0},
        data="one-vs-rest MNIST, 28x28 grey, 5,000 offline digits; HSC-OE and Deep SVDD",
        metrics={
            "hsc": {"normality_auroc": 50.9, "validity": 96.4, "fidn": 31.5},
            "dsvdd": {"normality_auroc": 30.8, "validity": 95.5, "fidn": 44.2},
        },
        runs=10,
        command="python benchmarks/paper_tables_mnist.py --detectors hsc dsvdd --classes C "
        "--steps 1000 --out OUT.json  (C = 0, ..., 9)",
        measured="2026-12-02/03; " + MEASURED_BEFORE_GAIN,
    )
    #: Colored-MNIST with BCE-OE: one concept recolours the whole image, the other redraws
    #: the digit in its own colours.
    COLORED_MNIST = _recipe(
        {"concept_routes": _ROUTES},
        data="Colored-MNIST, 28x28 RGB; BCE-OE",
        metrics={"bce": {"normality_auroc": 47.1, "validity": 95.5, "fidn": 5.8}},
        runs=3,
        command="python benchmarks/paper_tables_colored.py --detectors bce --steps 2500 "
        "--seed S --out OUT.json  (S = 0, 2, 3)",
        measured="2026-11-30; " + MEASURED_BEFORE_GAIN,
    )
    #: Colored-MNIST with HSC-OE: the routes, and L_phi ten times stronger.
    COLORED_MNIST_HSC = _recipe(
        {"concept_routes": _ROUTES, "lambda_phi": 10.0},
        data="Colored-MNIST, 28x28 RGB; HSC-OE",
        metrics={"hsc": {"normality_auroc": 55.4, "validity": 99.9, "fidn": 12.7}},
        runs=3,
        command="python benchmarks/paper_tables_colored.py --detectors hsc --steps 5000 "
        "--seed S --out OUT.json  (S = 0, 1, 2)",
        measured="2026-11-30/12-01; " + MEASURED_BEFORE_GAIN,
    )
    #: Colored-MNIST with Deep SVDD: the routes, L_phi ten times stronger, and a realism term
    #: ten times stronger against the dimmed digits this detector accepts.
    COLORED_MNIST_DSVDD = _recipe(
        {"concept_routes": _ROUTES, "lambda_phi": 10.0, "lambda_gan": 50.0},
        data="Colored-MNIST, 28x28 RGB; Deep SVDD",
        metrics={"dsvdd": {"normality_auroc": 53.0, "validity": 72.1, "fidn": 32.7}},
        runs=3,
        command="python benchmarks/paper_tables_colored.py --detectors dsvdd --steps 2500 "
        "--seed S --out OUT.json  (S = 0, 1, 2)",
        measured="2026-12-01/02; " + MEASURED_BEFORE_GAIN,
    )

    @property
    def recipe(self) -> Recipe:
        """The preset's settings, metrics and command."""
        recipe: Recipe = self.value
        return recipe

    @property
    def config(self) -> GeneratorConfig:
        """``GeneratorConfig()`` with the preset's overrides."""
        return GeneratorConfig.from_dict(dict(self.recipe.overrides))

    @classmethod
    def from_name(cls, name: str) -> Preset:
        """The preset called ``name``, in any case (``"colored_mnist"``); a ``ValueError``
        that lists the names otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            names = ", ".join(preset.name.lower() for preset in cls)
            raise ValueError(f"no preset called {name!r}; the presets are: {names}.") from None
