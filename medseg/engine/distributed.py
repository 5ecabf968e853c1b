"""Multi-GPU and multi-node runs through PyTorch's own engine: torchrun + DistributedDataParallel.

``torchrun`` starts one process per GPU and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the
rendezvous address; medseg reads them here and nowhere else:

- training (:class:`~medseg.engine.trainer.Trainer`): the process group is joined (NCCL on CUDA, gloo on
  the CPU), each rank drives ``cuda:LOCAL_RANK``, the network is wrapped in DDP, the loader samples a
  disjoint share of the cases per rank (:class:`~torch.utils.data.DistributedSampler`, reseeded per epoch
  like the single-process loader), and only rank 0 logs, checkpoints and exports; every rank resumes from
  the same checkpoint;
- prediction (``medseg predict`` on a folder): no process group is needed; each rank takes every
  ``WORLD_SIZE``-th case (:func:`shard`) on its own GPU.

Single-process runs see ``world_size() == 1`` and none of this changes anything.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from medseg.device import is_distributed, is_main, local_device, local_rank, rank, shard, world_size

T = TypeVar("T")


def init(device: torch.device) -> bool:
    """Join the process group when run under torchrun (idempotent). Returns whether distributed."""
    if not is_distributed():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=int(os.environ.get("MEDSEG_DIST_TIMEOUT_MIN", "60"))))
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generating a phantom dataset), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def wrap(network: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """The network in DDP when distributed (gradients all-reduced), else itself."""
    if not active() or not any(p.requires_grad for p in network.parameters()):
        return network
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=ids, find_unused_parameters=find_unused_parameters)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average scalar terms (epoch losses) over ranks, for logging."""
    if not active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, t.cpu())}


def broadcast_object(obj: T) -> T:
    """Rank 0's value of ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def replicas_identical(modules: dict[str, nn.Module]) -> bool:
    """Whether every rank holds bit-identical parameters and buffers (checked against rank 0)."""
    if not active():
        return True
    same = True
    for module in modules.values():
        for tensor in [*module.parameters(), *module.buffers()]:
            mine = tensor.detach().clone()
            theirs = mine.clone()
            dist.broadcast(theirs, src=0)
            same &= bool(torch.equal(mine, theirs))
    flag = torch.tensor([1 if same else 0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def finish() -> None:
    """Leave the process group (end of a distributed command).

    Objects that still hold the group (a DistributedDataParallel wrapper kept alive by a reference cycle) are
    collected first: a gloo group outliving ``destroy_process_group`` is torn down at interpreter exit, where
    its worker threads can abort the process ("terminate called without an active exception", seen on one
    rank in about one run of five under load).
    """
    if active():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


__all__ = [
    "active", "barrier", "broadcast_object", "finish", "init", "is_distributed", "is_main", "local_device", "local_rank",
    "main_first", "mean_over_ranks", "rank", "replicas_identical", "shard", "wrap", "world_size",
]
