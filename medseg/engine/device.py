"""Device choice with a reason a user can read (``--device auto`` prints it)."""

from __future__ import annotations

import torch

from medseg.errors import MedsegError


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
