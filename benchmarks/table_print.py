"""The paper tables as RESULTS.md prints them: the rows beside the paper's figures, the
oracle tables, and one line per normal class.

Shared by ``paper_tables.py`` (``--table``, ``--per-class``) and the fit scripts, which
print their rows when they finish.
"""

from __future__ import annotations

from typing import Dict, List

from table_merge import ORACLE

#: The paper's Tables 1-2 (mean +- std over normal classes): normality AuROC %, FIDN %.
PAPER = {
    ("mnist", "bce"): {"normality_auroc": "72.0 +- 4.0", "fidn": "43 +- 8.1"},
    ("mnist", "hsc"): {"normality_auroc": "80.8 +- 5.3", "fidn": "68 +- 14.6"},
    ("mnist", "dsvdd"): {"normality_auroc": "75.2 +- 9.2", "fidn": "100 +- 8.8"},
    ("colored_mnist", "bce"): {"normality_auroc": "55.6 +- 1.5", "fidn": "56 +- 12.4"},
    ("colored_mnist", "hsc"): {"normality_auroc": "55.8 +- 4.7", "fidn": "95 +- 30.5"},
    ("colored_mnist", "dsvdd"): {"normality_auroc": "61.5 +- 4.3", "fidn": "83 +- 8.7"},
    ("cifar10", "bce"): {"normality_auroc": "47.5 +- 10.0", "fidn": "116 +- 20.8"},
    ("cifar10", "hsc"): {"normality_auroc": "49.9 +- 4.4", "fidn": "300 +- 90.0"},
    ("cifar10", "dsvdd"): {"normality_auroc": "54.6 +- 3.4", "fidn": "116 +- 12.0"},
    # The synthetic signs stand in for the paper's GTSDB rows (real photographs, multi).
    ("traffic_signs", "bce"): {"normality_auroc": "GTSDB 50.2 +- 8.0", "fidn": "GTSDB 110 +- 101"},
    ("traffic_signs", "hsc"): {"normality_auroc": "GTSDB 48.6 +- 14.4", "fidn": "GTSDB 95 +- 74"},
    ("traffic_signs", "dsvdd"): {
        "normality_auroc": "GTSDB 53.1 +- 4.8",
        "fidn": "GTSDB 131 +- 118",
    },
}

#: What the table shows in the paper's place for a row whose paper figures are not above.
NOT_TRANSCRIBED = {"normality_auroc": "paper: n/a", "fidn": "paper: n/a"}


def _cell(values: List[float], percent: bool = True) -> str:
    scale = 100 if percent else 1
    return f"{scale * values[0]:.1f} +- {scale * values[1]:.1f}"


def markdown_table(rows: List[Dict]) -> str:
    """The RESULTS.md tables: the paper's metrics side by side, then the oracle tables."""
    lines = [
        "| data set | detector | runs | normality AuROC (paper) | FIDN (paper) | validity "
        "| proximity | concept acc. R / post-hoc | detector AuROC | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = PAPER.get((r["dataset"], r["detector"]), NOT_TRANSCRIBED)
        lines.append(
            f"| {r['dataset']} | {r['detector']} | {r['n_runs']} "
            f"| {_cell(r['normality_auroc'])} ({paper['normality_auroc']}) "
            f"| {r['fidn'][0]:.0f} +- {r['fidn'][1]:.0f} ({paper['fidn']}) "
            f"| {_cell(r['validity'])} | {r['proximity'][0]:.3f} "
            f"| {100 * r['concept_accuracy'][0]:.0f} "
            f"/ {100 * r['concept_accuracy_posthoc'][0]:.0f} "
            f"| {_cell(r['detector_auroc'])} | {r['train_seconds'][0]:.0f} |"
        )
    oracle = [r for r in rows if "disentanglement" in r]
    if oracle:
        keys = ("color_only", "digit_only", "both", "neither", "other", "patch")
        lines += [
            "",
            "| detector | concept | " + " | ".join(keys) + " |",
            "|---|---|" + "---|" * len(keys),
        ]
        for r in oracle:
            for concept, table in r["disentanglement"].items():
                cells = " | ".join(f"{100 * table[k]:.1f}" for k in keys)
                lines.append(f"| {r['detector']} | {concept.split('_')[1]} | {cells} |")
    signs = [r for r in rows if "oracle_changes" in r]
    if signs:
        keys = ("shape_changed", "rim_changed", "fill_changed", "symbol_changed")
        keys += ("background_changed", "some_factor_unsure")
        lines += [
            "",
            "| data set | detector | " + " | ".join(keys) + " | triangles made round |",
            "|---|---|" + "---|" * (len(keys) + 1),
        ]
        for r in signs:
            cells = " | ".join(f"{r['oracle_changes'].get(k, float('nan')):.1f}" for k in keys)
            made_round = r["triangles_made_round"].get("any_concept", float("nan"))
            lines.append(f"| {r['dataset']} | {r['detector']} | {cells} | {made_round:.1f} |")
    read = [r for r in rows if "oracle_classes" in r]
    if read:
        lines += [
            "",
            "| data set | detector | normal classes | made the normal digit | kept the input's "
            "digit | patch |",
            "|---|---|---|---|---|---|",
        ]
        for r in read:
            cells = " | ".join(_cell(r[key]) for key in ORACLE)
            classes = " ".join(str(c) for c in r["oracle_classes"])
            lines.append(f"| {r['dataset']} | {r['detector']} | {classes} | {cells} |")
    return "\n".join(lines)


def per_class_table(rows: List[Dict]) -> str:
    """The per-class table of single-class MNIST rows: normality AuROC / validity, then made
    the normal digit / added ink where the oracle ran (%)."""
    cells = {
        (r["normal_classes"][0], r["detector"]): r
        for r in rows
        if r["dataset"] == "mnist" and len(r["normal_classes"]) == 1
    }
    lines = ["| normal digit | BCE-OE | HSC-OE | DSVDD |", "|---|---|---|---|"]
    for digit in sorted({digit for digit, _ in cells}):
        shown = []
        for name in ("bce", "hsc", "dsvdd"):
            r = cells.get((digit, name))
            keys = ("normality_auroc", "validity", "oracle_to_normal", "oracle_patch")
            values = [] if r is None else [100 * r[key][0] for key in keys if key in r]
            formats = ("{:.1f}", "{:.1f}", "{:.1f}", "{:.0f}")
            shown.append(" / ".join(f.format(v) for f, v in zip(formats, values)) or "-")
        lines.append(f"| {digit} | " + " | ".join(shown) + " |")
    return "\n".join(lines)
