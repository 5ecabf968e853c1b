"""Device choice with a reason a user can read (``--device auto`` prints it), and this process's place in a
torchrun job (read from the environment torchrun sets; no process group needed).

A low floor (beside :mod:`medseg.io`) so prediction, training and the gateway share it; the process-group
side of multi-GPU training lives in :mod:`medseg.engine.distributed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch

from medseg.errors import MedsegError

T = TypeVar("T")


def world_size() -> int:
    """Processes in the run (``WORLD_SIZE`` from torchrun; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that logs, checkpoints, exports and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, ``cuda`` means this process's GPU (``cuda:LOCAL_RANK``); other devices are unchanged."""
    if is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
    return device


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``WORLD_SIZE``-th one, starting at ``RANK``."""
    return list(items[rank() :: world_size()])


def resolve_device(spec: str = "auto") -> tuple[torch.device, str]:
    """``auto|cpu|cuda|cuda:N|mps`` -> ``(device, reason)``.

    Raises:
        MedsegError: an explicitly requested device that this machine does not have.
    """
    spec = (spec or "auto").lower()
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if spec == "auto":
        if cuda:
            return torch.device("cuda:0"), f"CUDA available: using cuda:0 ({torch.cuda.get_device_name(0)})"
        if mps:
            return torch.device("mps"), "CUDA not available, Apple MPS available: using mps"
        return torch.device("cpu"), "CUDA not available: running on CPU"
    if spec == "cpu":
        return torch.device("cpu"), "CPU requested"
    if spec.startswith("cuda"):
        if not cuda:
            raise MedsegError(f"--device {spec}: CUDA is not available on this machine (use --device cpu or auto)")
        device = torch.device(spec if ":" in spec else "cuda:0")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MedsegError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device, f"using {device} ({torch.cuda.get_device_name(device)})"
    if spec == "mps":
        if not mps:
            raise MedsegError("--device mps: Apple MPS is not available on this machine")
        return torch.device("mps"), "using mps"
    raise MedsegError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")
