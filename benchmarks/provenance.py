"""Shared by the benchmarks: where a figure came from (the command, the date, the machine)
and the mean +- std of per-run figures."""

from __future__ import annotations

import platform
import statistics
import sys
from datetime import date
from typing import Dict, List

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def provenance() -> Dict[str, str]:
    """``command``, ``date`` and ``machine`` for a results JSON."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {
        "command": "python " + " ".join(sys.argv),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {_cpu_model()}, {torch.get_num_threads()} torch threads, "
        f"{device}, torch {torch.__version__}",
    }


def mean_std(values: List[float]) -> List[float]:
    """``[mean, sample std]`` of per-run figures (std 0 for a single run)."""
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]
