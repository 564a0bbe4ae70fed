"""The ``captum-cfx`` command line."""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional

import captum_cfx


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-cfx`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="captum-cfx",
        description="Counterfactual explanations for image anomaly detectors, beside Captum.",
    )
    parser.add_argument(
        "--version", action="version", version=f"captum-cfx {captum_cfx.__version__}"
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.run(args))
