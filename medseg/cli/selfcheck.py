"""``medseg selfcheck``: can this installation (or container) segment? Versions, device, models, scratch space.

Prints the library versions, the device ``--device`` resolves to and why (e.g. "CUDA not available:
running on CPU"), the user it runs as, whether the temp folder is writable, and loads every model package
under ``--models`` (default ``$MEDSEG_MODELS``; the Docker image bakes them into ``/models``), running one
forward pass of a patch of zeros through each. Exit code 0 when all is well, 1 otherwise; the Docker
image's HEALTHCHECK runs it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from medseg.cli.predict import MODELS_ENV
from medseg.model.package import MANIFEST, describe, load_model_package
from medseg.errors import MedsegError
from medseg.inference.report import versions


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


def _check_model(path: Path, device: Any) -> dict[str, Any]:
    import torch

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


def selfcheck(
    models: list[Path] | None = typer.Option(None, "--models", help=f"Model package or folder of packages (repeatable; default ${MODELS_ENV})."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; the exit code says it all (HEALTHCHECK)."),
) -> None:
    """Check versions, the device, scratch space and every model package; exit 1 on any problem."""
    from medseg.engine.device import resolve_device

    problems: list[str] = []
    result: dict[str, Any] = {"versions": versions(), "user": _user(), "scratch": _scratch()}
    if not result["scratch"]["writable"]:
        problems.append(f"temp folder {result['scratch']['path']} is not writable (docker run --read-only needs --tmpfs /tmp)")
    try:
        dev, reason = resolve_device(device)
        result["device"] = {"name": str(dev), "reason": reason}
    except MedsegError as exc:
        dev, result["device"] = None, {"name": None, "reason": str(exc)}
        problems.append(str(exc))
    roots = list(models or []) or ([Path(os.environ[MODELS_ENV])] if os.environ.get(MODELS_ENV) else [])
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
    if roots and not packages:
        problems.append(f"no model packages under {', '.join(map(str, roots))}")
    result["problems"] = problems
    result["ok"] = not problems
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        _print(result)
    if problems:
        raise typer.Exit(1)


def _print(result: dict[str, Any]) -> None:
    v = result["versions"]
    out = sys.stdout
    out.write("versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + "\n")
    out.write(f"device:   {result['device']['name']} ({result['device']['reason']})\n")
    user = result["user"]
    out.write(f"user:     uid {user['uid']} gid {user['gid']}{' (root)' if user['root'] else ''}\n")
    out.write(f"scratch:  {result['scratch']['path']} {'writable' if result['scratch']['writable'] else 'NOT writable'}\n")
    for m in result["models"]:
        if m["ok"]:
            out.write(f"model:    {m['name']} ({m['network']}, labels {', '.join(m['labels'].values())}) at {m['path']}: loaded, forward pass ok in {m['seconds']} s\n")
        else:
            out.write(f"model:    {m['path']}: FAILED: {m['error']}\n")
    if not result["models"]:
        out.write("models:   none found\n")
    out.write(("ok\n" if result["ok"] else "") + "".join(f"problem:  {p}\n" for p in result["problems"]))
