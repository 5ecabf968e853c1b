"""Registries for dataset layouts (real releases, read in place) and phantom generators (synthetic data).

A pipeline names them in YAML: ``data.layout`` (default ``auto``) and ``data.synthetic.kind``. Each
method's module registers its own (e.g. ``lits``, ``brats``; ``liver_phantom``, ``glioma_phantom``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.data.layouts import Case

#: ``loader(path) -> list of cases``
LayoutLoader = Callable[[Path], list[Case]]
#: ``generator(root, n_train, n_test, seed, **options) -> dataset.json path`` (Decathlon layout)
PhantomGenerator = Callable[..., Path]

_LAYOUTS: dict[str, LayoutLoader] = {}
_PHANTOMS: dict[str, PhantomGenerator] = {}


def register_layout(name: str) -> Callable[[LayoutLoader], LayoutLoader]:
    def decorator(fn: LayoutLoader) -> LayoutLoader:
        _LAYOUTS[name] = fn
        return fn

    return decorator


def register_phantom(kind: str) -> Callable[[PhantomGenerator], PhantomGenerator]:
    def decorator(fn: PhantomGenerator) -> PhantomGenerator:
        _PHANTOMS[kind] = fn
        return fn

    return decorator


def _ensure_loaded() -> None:
    import medseg.data  # noqa: F401  (importing the package registers the built-in layouts and phantoms)


def load_layout(name: str, path: Path) -> list[Case]:
    _ensure_loaded()
    if name not in _LAYOUTS:
        raise KeyError(f"unknown dataset layout '{name}'; known: {', '.join(sorted(_LAYOUTS))}")
    return _LAYOUTS[name](path)


def generate_phantom(kind: str, root: Path, n_train: int, n_test: int, seed: int, **options: Any) -> Path:
    _ensure_loaded()
    if kind not in _PHANTOMS:
        raise KeyError(f"unknown phantom kind '{kind}'; known: {', '.join(sorted(_PHANTOMS))}")
    return _PHANTOMS[kind](root, n_train, n_test, seed, **options)


def list_layouts() -> list[str]:
    _ensure_loaded()
    return sorted(_LAYOUTS)


def list_phantoms() -> list[str]:
    _ensure_loaded()
    return sorted(_PHANTOMS)
