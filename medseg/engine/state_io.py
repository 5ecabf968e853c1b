"""Save nested training state (optimizer, scheduler, RNG states) without pickle.

``torch.save`` pickles, and unpickling a file can run code; medseg never does it. A state object
(nested dicts/lists/tuples of tensors, numpy arrays and JSON scalars) is split into a safetensors file
holding every tensor and a JSON skeleton that refers to them by key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from medseg.io.atomic import atomic_path, write_text


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "s") -> Any:
    """Replace tensors/arrays in ``obj`` by references, collecting them into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": prefix, "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: flatten_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, flatten_state(v, tensors, f"{prefix}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(obj["dtype"], copy=False)
    if "__dict__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
    raise ValueError(f"unknown state node {sorted(obj)}")


def save_state(folder: str | Path, name: str, state: Any) -> None:
    """Write ``name.safetensors`` + ``name.json`` into ``folder``."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state(state, tensors)
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text(folder / f"{name}.json", json.dumps(skeleton))


def load_state(folder: str | Path, name: str) -> Any:
    """Read a state written by :func:`save_state`."""
    folder = Path(folder)
    skeleton = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    tensors = load_file(str(folder / f"{name}.safetensors"))
    return unflatten_state(skeleton, tensors)


def rng_state() -> dict[str, Any]:
    """Global RNG states of python, numpy and torch (CPU and CUDA)."""
    import random

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import random

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
