"""Registries for dataset layouts (real releases, read in place) and phantom generators (synthetic data).

A pipeline names them in YAML: ``data.layout`` (default ``auto``) and ``data.synthetic.kind``. Each
method's module in :mod:`medseg.data` registers its own (e.g. ``lits``, ``brats``; ``liver_phantom``,
``glioma_phantom``); the modules are imported when a registry is first asked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.progress import step
from medseg.registry import Registry

#: ``loader(path) -> list of cases`` (``medseg.data.layouts.Case`` dicts)
LayoutLoader = Callable[[Path], list[dict[str, Any]]]
#: ``generator(root, n_train, n_test, seed, **options) -> dataset.json path`` (Decathlon layout)
PhantomGenerator = Callable[..., Path]

LAYOUTS: Registry[LayoutLoader] = Registry("dataset layout", packages=["medseg.data"], option="data.layout")
PHANTOMS: Registry[PhantomGenerator] = Registry("phantom kind", packages=["medseg.data"], option="data.synthetic.kind")
register_layout = LAYOUTS.register
register_phantom = PHANTOMS.register


def load_layout(name: str, path: Path) -> list[dict[str, Any]]:
    """Cases of the dataset at ``path`` read by the registered layout ``name``."""
    return LAYOUTS.get(name)(path)


def generate_phantom(kind: str, root: Path, n_train: int, n_test: int, seed: int, **options: Any) -> Path:
    """Run the registered phantom generator ``kind``; returns its ``dataset.json``."""
    generator = PHANTOMS.get(kind)
    with step(f"generating {n_train + n_test} {kind} phantoms in {root}"):
        return generator(root, n_train, n_test, seed, **options)


def list_layouts() -> list[str]:
    return LAYOUTS.names()


def list_phantoms() -> list[str]:
    return PHANTOMS.names()
