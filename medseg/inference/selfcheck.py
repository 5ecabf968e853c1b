"""Can this installation (or container) segment? Versions, device, user, scratch space, model packages.

:func:`selfcheck` loads every model package under the given folders (default ``$MEDSEG_MODELS``; the
Docker image bakes them into ``/models``) and runs one forward pass of a patch of zeros through each.
No model package at all is a problem (an installation that cannot segment is not healthy) unless
``allow_empty``. It also lists which optional outputs this installation can write (DICOM SEG needs
highdicom and pydicom; OpenVINO and ONNX Runtime when installed); a missing one is not a problem.
``medseg selfcheck`` prints the result; the Docker image's HEALTHCHECK runs it.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medseg.device import resolve_device
from medseg.errors import MedsegError
from medseg.inference.jobs import MODELS_ENV
from medseg.inference.report import versions
from medseg.model.package import MANIFEST, describe, load_model_package


def _user() -> dict[str, Any]:
    uid = os.getuid() if hasattr(os, "getuid") else None
    return {"uid": uid, "gid": os.getgid() if hasattr(os, "getgid") else None, "root": uid == 0}


def _scratch() -> dict[str, Any]:
    folder = tempfile.gettempdir()
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medseg-selfcheck-"):
            return {"path": folder, "writable": True}
    except OSError as exc:
        return {"path": folder, "writable": False, "error": exc.strerror or str(exc)}


#: optional outputs: name -> (the Python packages it needs, what it is for)
OPTIONAL_OUTPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "dicom-seg": (("highdicom", "pydicom"), "DICOM SEG output (-o case.dcm, --output-format dicom-seg)"),
    "openvino": (("openvino",), "OpenVINO runtime (Intel CPU/GPU inference)"),
    "onnxruntime": (("onnxruntime",), "ONNX Runtime"),
}


def optional_outputs() -> dict[str, dict[str, Any]]:
    """``{name: {"available", "needs", "missing", "what"}}`` for each of :data:`OPTIONAL_OUTPUTS` (found, not imported)."""
    out = {}
    for name, (needs, what) in OPTIONAL_OUTPUTS.items():
        missing = [pkg for pkg in needs if importlib.util.find_spec(pkg) is None]
        out[name] = {"available": not missing, "needs": list(needs), "missing": missing, "what": what}
    return out


def _check_model(path: Path, device: torch.device) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        package = load_model_package(path, device)
        manifest = package.manifest
        x = torch.zeros((1, len(manifest.modalities), *manifest.patch_size), device=device)
        with torch.no_grad():
            package.network(x)
        return {**describe(package), "ok": True, "seconds": round(time.perf_counter() - start, 2)}
    except (MedsegError, RuntimeError, ValueError) as exc:
        return {"path": str(path), "ok": False, "error": " ".join(str(exc).split())[:300]}


def selfcheck(models: Sequence[Path] = (), device: str = "auto", allow_empty: bool = False) -> dict[str, Any]:
    """``{"versions", "user", "scratch", "device", "outputs", "models", "problems", "ok"}``: each problem is
    one line; finding no model package is one unless ``allow_empty``."""
    problems: list[str] = []
    result: dict[str, Any] = {"versions": versions(), "user": _user(), "scratch": _scratch(), "outputs": optional_outputs()}
    if not result["scratch"]["writable"]:
        problems.append(f"temp folder {result['scratch']['path']} is not writable (docker run --read-only needs --tmpfs /tmp)")
    dev: torch.device | None
    try:
        dev, reason = resolve_device(device)
        result["device"] = {"name": str(dev), "reason": reason}
    except MedsegError as exc:
        dev, result["device"] = None, {"name": None, "reason": str(exc)}
        problems.append(str(exc))
    roots = list(models) or ([Path(os.environ[MODELS_ENV])] if os.environ.get(MODELS_ENV) else [])
    packages = []
    for root in roots:
        if (root / MANIFEST).is_file():
            packages.append(root)
        elif root.is_dir():
            packages.extend(sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()))
        else:
            problems.append(f"{root}: no such model folder")
    result["models"] = [_check_model(p, dev) for p in packages] if dev is not None else []
    problems += [f"model {m['path']}: {m['error']}" for m in result["models"] if not m["ok"]]
    if not packages and not allow_empty and not any(p.startswith(f"{r}: no such") for r in roots for p in problems):
        where = f"under {', '.join(map(str, roots))}" if roots else f"(no -m given and ${MODELS_ENV} is not set)"
        problems.append(f"no model package {where}; nothing to segment with (--allow-empty to accept that)")
    result["problems"] = problems
    result["ok"] = not problems
    return result


def format_selfcheck(result: dict[str, Any]) -> str:
    """The text ``medseg selfcheck`` prints."""
    v = result["versions"]
    lines = ["versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val)]
    lines.append(f"device:   {result['device']['name']} ({result['device']['reason']})")
    user = result["user"]
    lines.append(f"user:     uid {user['uid']} gid {user['gid']}{' (root)' if user['root'] else ''}")
    lines.append(f"scratch:  {result['scratch']['path']} {'writable' if result['scratch']['writable'] else 'NOT writable'}")
    for m in result["models"]:
        if m["ok"]:
            lines.append(f"model:    {m['name']} ({m['network']}, labels {', '.join(m['labels'].values())}) at {m['path']}: loaded, forward pass ok in {m['seconds']} s")
        else:
            lines.append(f"model:    {m['path']}: FAILED: {m['error']}")
    if not result["models"]:
        lines.append("models:   none found")
    for name, o in result["outputs"].items():
        state = "available" if o["available"] else f"not available ({', '.join(o['missing'])} not installed)"
        lines.append(f"optional: {name}: {state}: {o['what']}")
    if result["ok"]:
        lines.append("ok")
    lines += [f"problem:  {p}" for p in result["problems"]]
    return "\n".join(lines) + "\n"


__all__ = ["format_selfcheck", "selfcheck"]
