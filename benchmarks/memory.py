"""Benchmark: peak memory of ``attribute`` and of ``fit`` as the number of images grows.

For each N, a fresh process explains N random 3x28x28 images with ``internal_batch_size``
and reports its peak resident memory, minus the memory of the inputs and the output
themselves (which any caller holds). Flat working memory means the batch, not N, sets the
cost. Then, for each N of ``--fit-sizes``, a fresh process fits an explainer (the default
recipe, ``FIT_STEPS`` steps) on a ``DataLoader`` over a Dataset that makes N normal 3x64x64
images from their index when read (none is stored), and reports its peak resident memory:
flat when fit reads the data a batch at a time and takes what it needs of the whole set from
bounded samples. Writes ``benchmarks/results/memory.json``.

    python benchmarks/memory.py [--sizes 1000 10000 50000] [--internal-batch-size 256]
        [--fit-sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance

RESULTS = Path(__file__).parent / "results"

CHILD = """
import resource, sys, torch
from captum_cfx import CounterfactualAnomalyExplainer
torch.manual_seed(0)
normal = torch.rand(64, 3, 28, 28) * 0.2
spot = lambda x: torch.sigmoid(10 * (x.mean((1, 2, 3)) - 0.3))
explainer = CounterfactualAnomalyExplainer().fit(spot, [normal], steps=1, progress=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = torch.rand(int(sys.argv[1]), 3, 28, 28)
attr = explainer.attribute(x, internal_batch_size=int(sys.argv[2]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak, x.numel() * 4 + attr.numel() * 4)
"""

#: Training steps of each fit: enough to read batches and judge once.
FIT_STEPS = 2

FIT_CHILD = """
import resource, sys, warnings, torch
from torch.utils.data import DataLoader, Dataset
from captum_cfx import CounterfactualAnomalyExplainer

class MadeImages(Dataset):
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        return 0.2 * torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))

spot = lambda x: torch.sigmoid(10 * (x.mean((1, 2, 3)) - 0.3))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
warnings.simplefilter("ignore")
loader = DataLoader(MadeImages(int(sys.argv[1])), batch_size=64, shuffle=True)
CounterfactualAnomalyExplainer().fit(spot, loader, steps=int(sys.argv[2]), progress=False)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def fit_rows(sizes: list) -> list:
    """fit's peak resident memory (and the minutes it took) per number of normal images."""
    rows = []
    for n in sizes:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", FIT_CHILD, str(n), str(FIT_STEPS)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        base_kib, peak_kib = (int(v) for v in out[-2:])
        rows.append(
            {
                "n_images": n,
                "peak_rss_mib": peak_kib / 1024,
                "fit_mib": (peak_kib - base_kib) / 1024,
                "minutes": round((time.perf_counter() - start) / 60, 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--internal-batch-size", type=int, default=256)
    parser.add_argument("--fit-sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(args.internal_batch_size)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        base_kib, peak_kib, data_bytes = (int(v) for v in out[-3:])
        working_mib = (peak_kib * 1024 - data_bytes) / 2**20 - base_kib / 1024
        rows.append(
            {
                "n_images": n,
                "peak_rss_mib": peak_kib / 1024,
                "inputs_and_output_mib": data_bytes / 2**20,
                "working_mib": working_mib,
            }
        )
        print(rows[-1], flush=True)
    report = {
        **provenance(),
        "internal_batch_size": args.internal_batch_size,
        "rows": rows,
        "fit": {
            "images": "3x64x64, made by a Dataset when read",
            "steps": FIT_STEPS,
            "rows": fit_rows(args.fit_sizes),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
