"""Faster gzip for NIfTI (``.nii.gz``) through ISA-L (the ``isal`` package), when it is installed.

nibabel opens ``.gz`` files through Python's ``gzip`` (zlib). ISA-L's ``igzip`` reads and writes the
same gzip format 2-6x faster; on a 256x256x128 int16 CT (11 MB compressed, this machine) reading took
1.52 s with zlib and 0.65 s with ISA-L, compressing 3.7 s (zlib level 1, nibabel's default) and 0.63 s
(ISA-L level 1). :func:`enable` registers it as nibabel's ``.gz`` opener; files stay standard gzip
(any reader opens them). Without ``isal`` nothing changes. ``MEDSEG_FAST_GZIP=0`` turns it off.
"""

from __future__ import annotations

import os
from typing import Any

_ENABLED = False


def isal_gzip_open(filename: str, mode: str = "rb", compresslevel: int = 1, mtime: int = 0, keep_open: bool = False) -> Any:
    """nibabel's ``gzip_open`` signature on ISA-L's ``IGzipFile`` (ISA-L levels are 0-3)."""
    from isal import igzip

    return igzip.IGzipFile(filename, mode, compresslevel=min(max(int(compresslevel), 0), 3), mtime=mtime)


def enable() -> bool:
    """Make nibabel read and write ``.gz`` through ISA-L; returns whether it is in use."""
    global _ENABLED
    if _ENABLED:
        return True
    if os.environ.get("MEDSEG_FAST_GZIP", "1") == "0":
        return False
    try:
        import isal.igzip  # noqa: F401
    except ImportError:
        return False
    from nibabel.openers import ImageOpener, Opener

    opener = (isal_gzip_open, ("mode", "compresslevel", "mtime", "keep_open"))
    Opener.compress_ext_map[".gz"] = opener
    ImageOpener.compress_ext_map[".gz"] = opener
    _ENABLED = True
    return True
