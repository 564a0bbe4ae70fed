"""Training on several processes with PyTorch's own ``torch.distributed``.

``fit`` under ``torchrun`` finds the process group (or, with ``distributed=True``, starts it
from torchrun's environment: gloo on the CPU, nccl on CUDA) and trains as a :class:`World` of
processes: G, D and R wrapped in ``DistributedDataParallel``, each process computing its
share of every batch, and the few statistics a step takes of the whole batch (the normal
quantiles' ranks, the batch's normality AuROC, the logged losses) gathered from all of them.
``World()`` is one process alone, whose collectives hand back their input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

#: The variables ``torchrun`` sets for each process it starts.
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """The processes that train together: this one is ``rank`` of ``size``.

    Args:
        rank (int): this process's rank, 0 to ``size`` - 1. Default: 0
        size (int): the number of processes. Default: 1 (one process, no process group)
        device (torch.device): where this process trains; the collectives' tensors live
            there (nccl takes CUDA tensors only). Default: CPU
    """

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes: checkpoints, the saved explainer, the progress bar."""
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in ``DistributedDataParallel``, which averages its gradients over the
        processes in ``backward``; ``module`` itself for one process."""
        if self.size == 1:
            return module
        ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def mean(self, values: Tensor) -> Tensor:
        """The mean over the processes of ``values`` (any shape, on ``device``); NaN on one
        process is NaN on all, so all of them stop together."""
        if self.size == 1:
            return values
        total = values.detach().clone()
        dist.all_reduce(total)
        return total / self.size

    def gather(self, values: Tensor) -> Tuple[Tensor, int]:
        """Every process's ``values`` (n_rank, ...) on ``device``, the row counts free to
        differ, concatenated in rank order, and the row where this process's start."""
        if self.size == 1:
            return values, 0
        count = torch.tensor([len(values)], device=values.device)
        counts = [torch.empty_like(count) for _ in range(self.size)]
        dist.all_gather(counts, count)
        longest = int(max(int(c) for c in counts))
        padded = values.new_zeros((longest, *values.shape[1:]))
        padded[: len(values)] = values
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded.contiguous())
        start = sum(int(c) for c in counts[: self.rank])
        return torch.cat([part[: int(c)] for part, c in zip(parts, counts)]), start

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every process: decisions (keep this G, stop now) must be
        the same everywhere, or the processes wait on each other for ever."""
        if self.size == 1:
            return value
        shared = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(shared, 0)
        return float(shared)

    def share(self, module: nn.Module) -> None:
        """Copy rank 0's weights and buffers of ``module`` to every process."""
        if self.size == 1:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, 0)

    def check_same(self, facts: Dict[str, Any]) -> None:
        """Raise on every process when the processes disagree on ``facts`` (the data's
        shape, the seed, the steps): they would train different explainers, or wait on each
        other for ever."""
        if self.size == 1:
            return
        everyone: List[Any] = [None] * self.size
        dist.all_gather_object(everyone, facts)
        differ = [name for name in facts if any(other[name] != facts[name] for other in everyone)]
        if differ:
            seen = "; ".join(
                f"rank {rank}: " + ", ".join(f"{name} {other[name]}" for name in differ)
                for rank, other in enumerate(everyone)
            )
            raise ValueError(
                f"the {self.size} processes disagree on {', '.join(differ)} ({seen}); every "
                "process must call fit with the same data and arguments."
            )


def join(distributed: Optional[bool], device: torch.device) -> World:
    """The processes ``fit`` trains with on ``device``.

    Args:
        distributed (bool, optional): None: the initialised process group, if any, else this
            process alone; True: the process group, initialised from torchrun's environment
            when it is not yet (gloo for the CPU, nccl for CUDA); False: this process alone.
        device (torch.device): where this process trains.

    Returns:
        The :class:`World`, its device ``device`` with the GPU's number filled in.

    Raises:
        ValueError: ``distributed=True`` outside torchrun, or a process group whose backend
            cannot carry ``device``'s tensors.
    """
    if distributed is False or not dist.is_available():
        if distributed:
            raise ValueError("distributed=True, but this PyTorch is built without it.")
        return World(device=device)
    if not dist.is_initialized():
        if not distributed:
            return World(device=device)
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise ValueError(
                f"distributed=True, but {', '.join(missing)} are not set: start the script with "
                "torchrun --nproc-per-node N script.py (or initialise torch.distributed first)."
            )
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    backend = dist.get_backend()
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(
            f"the process group's backend is nccl, which carries CUDA tensors only, but fit "
            f"trains on {device}; train on this process's GPU or start the group with gloo."
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return World(dist.get_rank(), dist.get_world_size(), device)


def is_writer() -> bool:
    """Whether this process writes files: rank 0 of an initialised process group, or a
    process alone."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def process_device(device: Optional[str]) -> Optional[str]:
    """Under torchrun, this process's own GPU (``cuda:LOCAL_RANK``) where ``device`` names
    CUDA without a number; ``device`` as given otherwise."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def under_torchrun() -> bool:
    """Whether torchrun started this process (its environment variables are all set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)
