"""The paper tables' rows (one per data set and detector) and how partial runs join.

Shared by ``paper_tables.py`` (``--merge``, ``--into``) and the fit scripts
(``paper_tables_mnist.py``, ``paper_tables_cifar.py``, ``paper_tables_colored.py``), which
write rows in this form.
"""

from __future__ import annotations

import json
import statistics
from typing import Dict, List

from provenance import pooled_mean_std

from captum_cfx import GeneratorConfig
from captum_cfx.data import FAINT_OVERLAY_LEVELS

#: A row's figures as ``[mean, std]`` over its runs (normal classes or seeds).
SUMMARISED = (
    "normality_auroc",
    "fidn",
    "validity",
    "validity_all",
    "proximity",
    "concept_accuracy",
    "concept_accuracy_posthoc",
    "detector_auroc",
    "train_seconds",
)
#: The digit oracle's reading of the counterfactuals (all K) of the flagged test anomalies
#: on MNIST (``captum_cfx.metrics.digit_factors``); rows from before it was added lack them.
ORACLE = ("oracle_to_normal", "oracle_kept", "oracle_patch")
#: A Colored-MNIST run's diagnostics, which do not pool: a merged row keeps them run by run.
RUN_DIAGNOSTICS = (
    "normality_auroc_by_concept",
    "normality_auroc_batches_at_end",
    "normality_auroc_train",
    "normal_shift_auroc",
    "normality_auroc_average_batches_at_end",
    "normality_auroc_of_normal_modes",
    "floor_at_end",
    "floors_at_end",
)


def merge_rows(rows: List[Dict]) -> List[Dict]:
    """Join rows of the same data set and detector (other normal classes or seeds, same
    steps and configuration) into one, pooling their mean +- std (and Colored-MNIST's oracle
    tables: :func:`_pooled_disentanglement`; its :data:`RUN_DIAGNOSTICS` run by run in
    ``diagnostics_runs``); others pass through."""
    groups: Dict[tuple, List[Dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["detector"]), []).append(row)
    merged = []
    for (dataset, detector), group in groups.items():
        first = group[0]
        if len(group) == 1:
            merged.append(first)
            continue
        for row in group[1:]:
            if _setting(row) != _setting(first):
                raise ValueError(
                    f"cannot pool {dataset} {detector} rows fitted with different steps, "
                    "configurations or detector training; re-run them alike, or merge them "
                    "into separate files."
                )
        merged.append(
            {
                **{key: value for key, value in first.items() if key not in RUN_DIAGNOSTICS},
                **{
                    key: pooled_mean_std([(r[key], r["n_runs"]) for r in group])
                    for key in SUMMARISED
                },
                **_pooled_oracle(group),
                **_pooled_disentanglement(group),
                **_diagnostics_by_run(group),
                "n_runs": sum(r["n_runs"] for r in group),
                **(
                    {"normal_classes": [c for r in group for c in r["normal_classes"]]}
                    if "normal_classes" in first
                    else {}
                ),
                "command": " ; ".join(r["command"] for r in group),
                "date": max(r["date"] for r in group),
                "machine": " ; ".join(dict.fromkeys(r["machine"] for r in group)),
            }
        )
    return merged


def replace_rows(table: List[Dict], rows: List[Dict]) -> List[Dict]:
    """``table`` with each row replaced by the row of ``rows`` of the same data set and
    detector; rows of ``rows`` that replace none are appended."""
    new = {(r["dataset"], r["detector"]): r for r in rows}
    kept = [new.pop((r["dataset"], r["detector"]), r) for r in table]
    return kept + list(new.values())


def _pooled_oracle(group: List[Dict]) -> Dict:
    """The :data:`ORACLE` shares pooled over the rows of ``group`` that have them."""
    measured = [r for r in group if "oracle_classes" in r]
    if not measured:
        return {}
    return {
        **{key: pooled_mean_std([(r[key], r["n_runs"]) for r in measured]) for key in ORACLE},
        "oracle_classes": [c for r in measured for c in r["oracle_classes"]],
    }


def _pooled_disentanglement(group: List[Dict]) -> Dict:
    """Colored-MNIST's oracle tables pooled over the runs (seeds) of ``group``: the mean
    share per concept and outcome, and every run's table in ``disentanglement_runs``."""
    if "disentanglement" not in group[0]:
        return {}
    runs = [t for r in group for t in r.get("disentanglement_runs", [r["disentanglement"]])]
    mean = {
        concept: {key: statistics.mean(run[concept][key] for run in runs) for key in table}
        for concept, table in runs[0].items()
    }
    return {"disentanglement": mean, "disentanglement_runs": runs}


def _diagnostics_by_run(group: List[Dict]) -> Dict:
    """The :data:`RUN_DIAGNOSTICS` of each run (seed) of ``group``, in order, as
    ``diagnostics_runs``; nothing for rows without them (MNIST's)."""
    runs = [
        run
        for r in group
        for run in r.get("diagnostics_runs", [{k: r[k] for k in RUN_DIAGNOSTICS if k in r}])
    ]
    return {"diagnostics_runs": runs} if any(runs) else {}


def _config(config: Dict) -> str:
    """A row's ``config`` with the fields added since it was written at their defaults, as
    canonical JSON; switches since retired stay in it, so rows must agree on them too (which
    ``GeneratorConfig.from_dict`` would refuse)."""
    defaults = json.loads(json.dumps(GeneratorConfig().to_dict()))
    return json.dumps({**defaults, **config}, sort_keys=True)


def _setting(row: Dict) -> tuple:
    """What must agree for rows to be pooled (rows from before ``--detector-augment``,
    ``--patch-outliers``, ``--stroke-outliers``, ``--overlay-outliers`` and
    ``--reference-share`` were trained without them; configuration fields added since a row
    was written take their defaults)."""
    return (
        row["steps"],
        _config(row["config"]),
        row.get("detector_augment", False),
        row.get("patch_outliers", False),
        row.get("stroke_outliers", False),
        row.get("overlay_outliers", False),
        tuple(row.get("overlay_levels") or FAINT_OVERLAY_LEVELS)
        if row.get("overlay_outliers")
        else None,
        row.get("reference_share", 0.0),
    )
