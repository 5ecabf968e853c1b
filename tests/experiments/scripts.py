"""Loading the claim experiments' scripts (pipelines/experiments/*.py are scripts, not an installed package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[2] / "pipelines" / "experiments"


def load(name: str) -> ModuleType:
    """Import ``pipelines/experiments/<name>.py`` as the module ``experiments_<name>``."""
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
