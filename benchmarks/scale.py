"""Benchmark: training steps per second on 1 and 2 processes (torch.distributed, gloo), and
what the gradients' all-reduce costs a step on N GPUs.

Each process runs ``CounterfactualTrainer.train_step`` with ``GeneratorConfig()`` (its
``batch_size`` images per process, so N processes train on N times the images a step: weak
scaling) against the plain CNN of ``speed.py`` on random RGB images, one torch thread per
process; one process with as many threads as the two processes have is the baseline the
images per second are compared with. Beside the timings, the arithmetic of weak scaling: a
step all-reduces the gradients of D (its update) and of G and R (theirs), 4 bytes per weight,
and a ring all-reduce moves 2 (N - 1) / N of them in and out of every GPU; their sizes per
image resolution and the milliseconds they take at the links' bandwidths. Writes
``benchmarks/results/scale.json``.

    python benchmarks/scale.py [--size 32] [--steps 12] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from provenance import provenance
from speed import plain_cnn

from captum_cfx import GeneratorConfig, as_detector
from captum_cfx.distributed import World
from captum_cfx.generative.config import build_networks
from captum_cfx.generative.trainer import CounterfactualTrainer

RESULTS = Path(__file__).parent / "results"
#: Links a ring all-reduce may run over, in GB/s each way: PCIe 4.0 x16, 200 Gb/s
#: InfiniBand, NVLink 4 (H100).
LINKS = {"pcie4_x16": 32.0, "infiniband_200g": 25.0, "nvlink4": 450.0}
#: Image sizes for the arithmetic (G and D grow a level per doubling above 64 px).
SIZES = (32, 64, 128, 256)


def _time_steps(rank: int, world_size: int, store: str, args: Any, out: str) -> None:
    """Time ``args.steps`` steps of one process of ``world_size``; rank 0 writes seconds."""
    torch.set_num_threads(args.threads)
    world = World()
    if world_size > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
        )
        world = World(rank, world_size)
    torch.manual_seed(0)
    normal = torch.rand(512, 3, args.size, args.size) * 0.3
    outliers = torch.rand(512, 3, args.size, args.size)
    phi = as_detector(plain_cnn(3), calibration="sigmoid")
    trainer = CounterfactualTrainer(
        phi, normal, outliers, 2, GeneratorConfig(), torch.device("cpu"), 0, world=world
    )
    for _ in range(args.warmup):
        trainer.train_step()
    if world_size > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps((time.perf_counter() - start) / args.steps))


def measure(processes: int, threads: int, args: argparse.Namespace) -> Dict[str, float]:
    """Seconds per step, steps and images per second of ``processes`` x ``threads``."""
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "seconds.json")
        run_args = argparse.Namespace(**{**vars(args), "threads": threads})
        mp.spawn(
            _time_steps,
            args=(processes, str(Path(folder) / "store"), run_args, out),
            nprocs=processes,
        )
        seconds = json.loads(Path(out).read_text())
    batch = GeneratorConfig().batch_size * processes
    row = {
        "processes": processes,
        "threads_per_process": threads,
        "seconds_per_step": seconds,
        "steps_per_second": 1 / seconds,
        "images_per_second": batch / seconds,
    }
    print(row, flush=True)
    return row


def all_reduce_arithmetic() -> Dict[str, Any]:
    """Per image size: the bytes of gradients a step all-reduces, and the milliseconds a ring
    all-reduce of them takes per link with 2 and 8 GPUs."""
    config = GeneratorConfig()
    rows = {}
    for size in SIZES:
        g, d, r = build_networks(3, 2, config, (size, size))
        weights = {
            "G+R": sum(p.numel() for p in [*g.parameters(), *r.parameters()]),
            "D": sum(p.numel() for p in d.parameters()),
        }
        megabytes = 4 * sum(weights.values()) / 1e6
        rows[f"{size}px"] = {
            "weights": weights,
            "gradient_megabytes_per_step": round(megabytes, 3),
            "ring_all_reduce_ms": {
                f"{n}_gpus": {
                    link: round(2 * (n - 1) / n * megabytes / gbps, 4)
                    for link, gbps in LINKS.items()
                }
                for n in (2, 8)
            },
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(1, 1, args), measure(1, 2, args), measure(2, 1, args)]
    report = {
        **provenance(),
        "size": args.size,
        "batch_size_per_process": GeneratorConfig().batch_size,
        "rows": rows,
        "speedup_2_processes_over_1_process_2_threads": rows[2]["images_per_second"]
        / rows[1]["images_per_second"],
        "speedup_2_processes_over_1_process_1_thread": rows[2]["images_per_second"]
        / rows[0]["images_per_second"],
        "all_reduce": all_reduce_arithmetic(),
        "links_gb_per_s": LINKS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
