"""Data parallelism by hand: this process's place in a ``torchrun`` job and the collectives the
loop needs (why not ``DistributedDataParallel``: :mod:`ptk.models.trainer`).

Every helper is a no-op, issuing no collective, when the job has one process, so a single-process
run never needs a process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistInfo",
    "RunningMean",
    "all_true",
    "average_over_ranks",
    "barrier",
    "broadcast_weights",
    "gather_from_ranks",
    "rank0_object",
    "setup_distributed",
    "sum_over_ranks",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_true(info: DistInfo, device: torch.device, flag: bool) -> bool:
    """``flag`` on every rank (one MIN all-reduce), so all ranks take the same branch."""
    if info.world_size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def sum_over_ranks(info: DistInfo, value: Tensor) -> Tensor:
    """``value`` summed in place over the ranks (returned for chaining)."""
    if info.world_size > 1:
        dist.all_reduce(value)
    return value


def average_over_ranks(info: DistInfo, grads: list[Tensor], n_total: float) -> list[Tensor]:
    """The accumulated gradients summed over the ranks in one bucketed all-reduce, divided by the
    number of good micro-batches of the whole job (in place where possible)."""
    if info.world_size > 1:
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        grads = list(torch._utils._unflatten_dense_tensors(flat, grads))
    torch._foreach_div_(grads, n_total)
    return grads


def rank0_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object, e.g. a list of names)."""
    if info.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_from_ranks(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if info.world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.world_size > 1:
        dist.barrier()


def broadcast_weights(info: DistInfo, model: nn.Module) -> None:
    """Rank 0's parameters and buffers copied into ``model`` on every rank."""
    if info.world_size == 1:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


@dataclass
class RunningMean:
    """Example-weighted running means of named scalars."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        if name not in self.sums:
            self.sums[name], self.counts[name] = 0.0, 0.0
            self.order.append(name)
        self.sums[name] += float(value) * weight
        self.counts[name] += weight

    def reduce(
        self, info: DistInfo, device: torch.device, names: list[str] | None = None
    ) -> dict[str, float]:
        """Means over every rank (names fixed by ``names`` or this rank's order)."""
        names = list(names if names is not None else self.order)
        if info.world_size > 1:
            packed = torch.tensor(
                [[self.sums.get(n, 0.0), self.counts.get(n, 0.0)] for n in names],
                dtype=torch.float64,
                device=device,
            )
            dist.all_reduce(packed)
            return {
                n: (s / c if c > 0 else float("nan"))
                for n, (s, c) in zip(names, packed.tolist(), strict=True)
            }
        return {n: (self.sums[n] / self.counts[n] if self.counts.get(n) else float("nan")) for n in names}
