"""Initialise a network, or one of its submodules, from earlier weights (``network.init_from``).

The general mechanism behind multi-stage recipes: H-DenseUNet's hybrid starts from a trained 2D DenseUNet
(``target: net2d``), a fine-tuning run starts from a model package, a run continues from another run's best
checkpoint. Sources are safetensors only (model packages, run folders, checkpoint folders or bare files),
so nothing is unpickled.

Example (pipeline YAML)::

    network:
      name: hdenseunet
      init_from: {path: stage:dense2d, target: net2d}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from medseg.config import InitConfig
from medseg.errors import MedsegConfigError, MedsegError
from medseg.model.package import WEIGHTS, core_network, sha256_file
from medseg.networks.registry import WEIGHT_CONVERTERS


def weights_file(path: Path) -> Path:
    """The safetensors file behind ``path``: itself, a package's (or checkpoint folder's) weights, or a run
    folder's exported package (else its best, else its last checkpoint; the network named ``model``)."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise MedsegConfigError(f"network.init_from: {path} is not a .safetensors file")
        return path
    # a package or checkpoint folder, a run folder's exported package, its best, its last checkpoint
    for candidate in (path / WEIGHTS, path / "model" / WEIGHTS, path / "checkpoints" / "best" / WEIGHTS, path / "checkpoints" / "last" / WEIGHTS):
        if candidate.is_file():
            return candidate
    raise MedsegConfigError(
        f"network.init_from: {path} holds no weights (expected a model package, a run folder or a .safetensors file)"
    )



def _select(state: dict[str, Any], prefix: str, source: Path) -> dict[str, Any]:
    if not prefix:
        return state
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        example = next(iter(state), "")
        raise MedsegConfigError(f"network.init_from: no key of {source} starts with '{prefix}' (keys look like '{example}')")
    return picked


def _target(network: nn.Module, name: str) -> nn.Module:
    net = core_network(network)
    if not name:
        return net
    try:
        return net.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in net.named_children())
        raise MedsegConfigError(f"network.init_from.target: the network has no submodule '{name}' (it has: {children})") from None


def initialise_network(network: nn.Module, init: InitConfig, base: Path | None = None) -> dict[str, Any]:
    """Load the weights ``init`` names into ``network`` (or its ``init.target`` submodule).

    Args:
        network: the freshly built network (wrappers such as SliceWise are looked through).
        init: what to load and where.
        base: folder that relative ``init.path`` values are relative to (the YAML's folder).

    Returns:
        A provenance record: source file, its SHA-256, target, loaded / skipped key counts.

    Raises:
        MedsegConfigError: missing source, no key with the prefix, unknown target, or (``strict``) any
        missing, unexpected or mis-shaped key, named in one line.
    """
    path = Path(init.path).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        raise MedsegConfigError(f"network.init_from: {path} not found")
    source = weights_file(path)
    convert = WEIGHT_CONVERTERS.get(init.convert) if init.convert is not None else None
    try:
        state = load_file(str(source))
    except SafetensorError as exc:
        raise MedsegConfigError(f"network.init_from: {source} is not a readable safetensors file ({exc})") from exc
    if convert is not None:
        try:
            state = dict(convert(state))
        except MedsegError as exc:
            raise MedsegConfigError(f"network.init_from: {source}: {exc}") from exc
    state = _select(state, init.prefix, source)
    target = _target(network, init.target)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if init.strict and (missing or unexpected or wrong):
        problems = [f"{len(missing)} missing (e.g. '{missing[0]}')"] if missing else []
        problems += [f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')"] if unexpected else []
        problems += [f"shape {tuple(state[wrong[0]].shape)} != {tuple(own[wrong[0]].shape)} at '{wrong[0]}'"] if wrong else []
        where = f" '{init.target}'" if init.target else ""
        raise MedsegConfigError(f"network.init_from: {source} does not fit the network{where}: " + "; ".join(problems))
    usable = {k: v for k, v in state.items() if k in own and k not in wrong}
    target.load_state_dict(usable, strict=False)
    return {
        "path": str(source),
        "sha256": sha256_file(source),
        "prefix": init.prefix,
        "target": init.target,
        "loaded": len(usable),
        "skipped": len(missing) + len(unexpected) + len(wrong),
    }
