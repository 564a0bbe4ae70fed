"""Seconds per training step of the explainer on RGB images (32x32 by default) on one CPU
thread, and the process's peak resident memory (run one size per process to read it per size).

The step is ``CounterfactualTrainer.train_step`` with ``GeneratorConfig()`` (or ``--config``),
inside ``cpu_memory_retained`` as ``CounterfactualTrainer.run`` trains, against a plain CNN
detector with raw logits, on random images (the time of a step does not depend on what the
images show). Run it against another checkout of the library (e.g. the last release, through
``PYTHONPATH``) to compare two versions on the same machine.

    python speed.py --label after --out results/speed.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from provenance import provenance
from torch import nn

from captum_cfx import GeneratorConfig, as_detector
from captum_cfx._device import cpu_memory_retained
from captum_cfx.generative.trainer import CounterfactualTrainer


def plain_cnn(channels: int) -> nn.Module:
    """An untrained plain CNN in eval mode, images -> raw logits (N,), as users' detectors
    often are (seed torch's global generator first for repeatable weights)."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 1),
        nn.Flatten(0),
    ).eval()


def seconds_per_step(config: GeneratorConfig, size: int, steps: int, warmup: int = 5) -> float:
    torch.manual_seed(0)
    normal = torch.rand(512, 3, size, size) * 0.3
    outliers = torch.rand(512, 3, size, size)
    phi = as_detector(plain_cnn(3), calibration="sigmoid")  # seeded above
    device = torch.device("cpu")
    trainer = CounterfactualTrainer(phi, normal, outliers, 2, config, device, seed=0)
    with cpu_memory_retained(device):
        for _ in range(warmup):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the key this run is stored under")
    parser.add_argument("--config", type=json.loads, default={})
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = GeneratorConfig(**args.config)
    times = [
        seconds_per_step(config, args.size, args.steps, args.warmup) for _ in range(args.repeats)
    ]
    best = min(times)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.label] = {
        "seconds_per_step": times,
        "steps_per_second": 1 / best,
        "size": args.size,
        "threads": 1,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "config": args.config,
        "library": str(Path(__import__("captum_cfx").__file__).parent),
        **provenance(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(args.label, f"{1 / best:.2f} steps/s", [round(t, 3) for t in times])


if __name__ == "__main__":
    main()
