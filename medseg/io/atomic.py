"""Atomic file output: write to a hidden temp file in the target folder, fsync, then rename over the target.

A reader never sees a half-written file, and a failure leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medseg.errors import MedsegOutputError

COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz", ".seg.nrrd")


def full_suffix(path: str | Path) -> str:
    """``scan.nii.gz`` -> ``.nii.gz``; ``x.nrrd`` -> ``.nrrd``; keeps the compound image extensions whole."""
    name = Path(path).name.lower()
    for suffix in COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return Path(path).name[-len(suffix) :]
    return Path(path).suffix


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it is writable by creating (and removing) a temp file in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MedsegOutputError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medseg-probe-"):
            pass
    except OSError as exc:
        raise MedsegOutputError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from exc
    return folder


def check_output_path(path: str | Path, force: bool) -> Path:
    """Fail early (before any work) if ``path`` exists without ``force`` or its folder is not writable."""
    path = Path(path)
    if path.exists() and not force:
        raise MedsegOutputError(f"{path}: output already exists (use --force to overwrite)")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` (same extension); on success fsync it and rename it to ``target``.

    Example:
        >>> with atomic_path("out/mask.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(img, tmp)
    """
    target = Path(target)
    folder = ensure_writable_dir(target.parent if str(target.parent) else Path("."))
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=f".tmp{full_suffix(target)}")
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; on success replace ``target`` by it (old one removed if ``force``)."""
    target = Path(target)
    if target.exists() and not force:
        raise MedsegOutputError(f"{target}: output already exists (use --force to overwrite)")
    parent = ensure_writable_dir(target.parent if str(target.parent) else Path("."))
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
