"""The ``captum-cfx`` command line."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import captum_cfx
from captum_cfx.demo import DEMO_STEPS, QUICK_STEPS, run_demo


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-cfx`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="captum-cfx",
        description="Counterfactual explanations for image anomaly detectors, beside Captum.",
    )
    parser.add_argument(
        "--version", action="version", version=f"captum-cfx {captum_cfx.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="train a detector and an explainer on Colored-MNIST and draw what they see",
        description="Colored-MNIST from the offline digits (normal: cyan digits and every 1): "
        "trains the BCE-OE detector and the explainer, then writes explanations.png "
        "(counterfactuals beside IntegratedGradients, Saliency and FCDD), traversal strips, "
        "metrics.json and the saved explainer into --out. A second run reuses them.",
    )
    demo.add_argument("--out", type=Path, default=Path("captum_cfx_demo"), help="output folder")
    demo.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STEPS} fit steps (under 2 minutes)"
    )
    demo.add_argument("--steps", type=int, default=None, help=f"fit steps (default {DEMO_STEPS})")
    demo.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    demo.add_argument("--detector-epochs", type=int, default=30, help="detector training epochs")
    demo.set_defaults(run=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    metrics = run_demo(
        args.out,
        quick=args.quick,
        steps=args.steps,
        device=args.device,
        detector_epochs=args.detector_epochs,
    )
    print(
        f"detector AuROC {metrics['detector_auroc']:.3f} | normality AuROC "
        f"{metrics['normality_auroc']:.3f} (50% is ideal) | validity "
        f"{metrics['validity_flagged']:.3f} "
        f"| proximity {metrics['proximity_flagged']:.4f} | concept accuracy "
        f"{metrics['concept_accuracy']:.3f}"
    )
    print(f"figures, metrics.json and the explainer are in {args.out.resolve()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args))
