"""Training checkpoints: a folder with the weights (safetensors) and the rest of the state (no pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from medseg.engine.state_io import load_state, save_state
from medseg.io.atomic import atomic_dir
from medseg.model.package import core_network


def save_checkpoint(folder: Path, networks: dict[str, nn.Module], state: dict[str, Any]) -> None:
    """Replace ``folder`` atomically by ``<name>.safetensors`` per network and ``state.{json,safetensors}``."""
    with atomic_dir(folder, force=True) as tmp:
        for name, net in networks.items():
            save_model(core_network(net), str(tmp / f"{name}.safetensors"))
        save_state(tmp, "state", state)


def load_checkpoint(folder: Path, networks: dict[str, nn.Module], device: str = "cpu") -> dict[str, Any]:
    """Load weights into ``networks`` (strict) and return the saved state."""
    for name, net in networks.items():
        load_model(core_network(net), str(folder / f"{name}.safetensors"), strict=True, device=device)
    return load_state(folder, "state")


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder, or one of its stage or fold folders, holds a checkpoint (something to resume or
    lose); a folder without one (a start that failed or was stopped before its first step) is started afresh."""
    return (run_dir / "checkpoints" / "last").is_dir() or any(p.is_dir() for p in run_dir.glob("*/checkpoints/last"))
