"""Black-box detectors explained through the surrogate that ``fit`` distils (RESULTS.md).

Detectors whose scores are numpy arrays, without gradient, on the normal images' pixels:
``knn`` (PyOD's kNN) and ``iforest`` (scikit-learn's IsolationForest), on Colored-MNIST by
default; each cell as ``generalisation.py`` runs it (the design card's calls,
``GeneratorConfig()``), validity read on the black box itself, and the surrogate's fidelity
(``explainer.surrogate_report_``) in the cell's ``fit_report``.

    python black_box.py --domains colored_mnist --detectors knn --max-steps 1500 \\
        --out results/black_box.json
"""

from __future__ import annotations

from generalisation import arguments, execute


def main() -> None:
    execute(
        arguments(
            __doc__.splitlines()[0], ["colored_mnist"], ["knn", "iforest"], "results/black_box.json"
        ).parse_args()
    )


if __name__ == "__main__":
    main()
