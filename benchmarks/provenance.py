"""Shared by the benchmarks: where a figure came from (the command, the date, the machine)
and the mean +- std of per-run figures."""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

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


def pooled_mean_std(parts: Sequence[Tuple[List[float], int]]) -> List[float]:
    """``[mean, sample std]`` over all runs behind several ``([mean, sample std], n_runs)``
    parts, exactly as :func:`mean_std` of the concatenated per-run figures would give."""
    n = sum(k for _, k in parts)
    mean = sum(m * k for (m, _), k in parts) / n
    squares = sum((k - 1) * s * s + k * m * m for (m, s), k in parts)
    return [mean, math.sqrt(max(squares - n * mean * mean, 0.0) / (n - 1)) if n > 1 else 0.0]


def write_json(report: Any, path: Path) -> None:
    """``report`` as indented JSON at ``path`` (its folder made as needed), and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
