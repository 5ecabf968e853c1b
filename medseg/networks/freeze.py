"""Freeze named submodules of a network for one training stage (``train.freeze`` in a pipeline).

A frozen submodule gets no gradients (``requires_grad=False``, so the trainer leaves it out of the optimizer)
and runs in eval mode even while its network trains: batch-norm statistics are neither taken from the batch
nor updated, dropout is off. H-DenseUNet's stage 2 is ``train.freeze: [net2d]`` (the code trains the 3D part
and HFF with the 2D network fixed).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from torch import nn

from medseg.errors import MedsegConfigError


class _KeepEval:
    """Forward pre-hook of the network (whose ``__call__`` always runs, unlike a submodule's, which a parent may
    bypass with e.g. ``forward_features``): puts the frozen submodules back into eval mode."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules

    def __call__(self, network: nn.Module, args: Any) -> None:
        for module in self.modules:
            if module.training:
                module.eval()


def freeze_submodules(network: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """Freeze ``network``'s submodules ``names`` (dotted, as in ``named_modules``); returns them.

    Raises:
        MedsegConfigError: a name that is not a submodule (one line, with the closest names).
    """
    modules = dict(network.named_modules())
    frozen = []
    for name in names:
        if not name or name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (top-level: {', '.join(n for n, _ in network.named_children())})"
            raise MedsegConfigError(f"train.freeze: {type(network).__name__} has no submodule {name!r}{hint}")
        module = modules[name]
        module.requires_grad_(False)
        module.eval()
        frozen.append(module)
    if frozen:
        network.register_forward_pre_hook(_KeepEval(frozen))  # the trainer's net.train() each epoch must not undo it
    return frozen
