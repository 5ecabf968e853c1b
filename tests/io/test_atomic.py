from __future__ import annotations

import os
from pathlib import Path

import pytest

from medseg.errors import MedsegOutputError
from medseg.io.atomic import atomic_dir, atomic_path, check_output_path, full_suffix


def test_failure_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".txt")
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_rollback_and_force(tmp_path: Path) -> None:
    target = tmp_path / "pkg"
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("x")
            raise ValueError
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(MedsegOutputError, match="exists"):
        with atomic_dir(target):
            pass
    with atomic_dir(target, force=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]


def test_check_output_path(tmp_path: Path) -> None:
    existing = tmp_path / "x.nii.gz"
    existing.write_text("")
    with pytest.raises(MedsegOutputError, match="--force"):
        check_output_path(existing, force=False)
    check_output_path(existing, force=True)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MedsegOutputError, match="not a folder"):
        check_output_path(blocker / "out.nii.gz", force=False)


def test_unwritable_folder(tmp_path: Path) -> None:
    """A read-only folder (as a normal user) or a read-only file system (/proc, as root) is refused up front."""
    if os.geteuid() == 0:  # root writes into chmod-555 folders, but not into /proc
        folder = Path("/proc/medseg-test")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    with pytest.raises(MedsegOutputError, match="not writable"):
        check_output_path(folder / "out.nii.gz", force=False)


def test_full_suffix() -> None:
    assert full_suffix("a/b/scan.NII.GZ") == ".NII.GZ"
    assert full_suffix("x.nrrd") == ".nrrd"
