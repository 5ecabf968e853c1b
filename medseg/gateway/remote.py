"""``medseg predict --dicomweb URL --study UID [--series UID]`` and ``--send-to TARGET``: one case pulled from a
DICOMweb server (QIDO/WADO-RS, :mod:`medseg.gateway.dicomweb`) and its DICOM SEG pushed to a PACS (C-STORE or
STOW-RS, :mod:`medseg.gateway.sender`), by the same functions the gateway uses.

:func:`remote_io` turns those options into the ordinary ``-i``/``-o`` of a prediction: the pulled series lives in
a temporary folder for the duration of the command, and without ``-o`` the SEG is written to a temporary
folder too (only sent). Everything is checked before anything is pulled or written.
"""

from __future__ import annotations

import importlib.util
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydantic import ValidationError

from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.gateway.config import Destination
from medseg.gateway.dicomweb import fetch_series
from medseg.gateway.sender import SendError, send
from medseg.io.atomic import full_suffix

#: The calling AE title of ``medseg predict --send-to AE@host:port``.
CALLING_AE = "MEDSEG"


@dataclass(frozen=True)
class RemoteIO:
    """The prediction's inputs and output once the remote options are resolved (paths valid inside :func:`remote_io`)."""

    inputs: tuple[Path, ...]
    output: Path
    output_format: str | None
    case_name: str | None
    destinations: tuple[Destination, ...]


def parse_destination(text: str, token_env: str | None = None, ca: Path | None = None) -> Destination:
    """``--send-to`` as a :class:`Destination` (``AE@host:port`` or an ``http(s)://`` DICOMweb root; ``ca`` for the latter)."""
    try:
        destination = Destination(target=text, token_env=token_env)
    except ValidationError:
        raise MedsegInputError(None, f"--send-to {text}: expected AE@host:port (DICOM C-STORE) or an http(s):// DICOMweb URL") from None
    return destination.model_copy(update={"ca": ca}) if destination.is_dicomweb else destination


def check_ca(ca: Path) -> Path:
    """``--ca``: an absolute path to a PEM bundle that Python's ssl loads (else a one-line error naming the file)."""
    if not ca.is_file():
        raise MedsegInputError(ca, "--ca: CA bundle not found")
    try:
        ssl.create_default_context(cafile=str(ca))
    except (ssl.SSLError, ValueError) as exc:
        raise MedsegInputError(ca, f"--ca: not a PEM CA bundle ({exc})") from None
    return ca.resolve()


@contextmanager
def remote_io(
    inputs: Sequence[Path], output: Path | None, output_format: str | None, dicomweb: str | None, study: str | None,
    series: str | None, send_to: Sequence[str], token_env: str | None = None, ca: Path | None = None,
) -> Iterator[RemoteIO]:
    """Check the options, pull the series (``dicomweb``) into a temporary folder, and yield what to predict.

    ``ca`` checks the HTTPS certificates of ``dicomweb`` and of DICOMweb destinations against that bundle only,
    as a destination's ``ca`` in ``gateway.yaml`` does.

    Raises:
        MedsegInputError: options that do not fit together, an unreachable server, an unknown study or series
            (one line; nothing is written).
    """
    if dicomweb is None and (study is not None or series is not None and not inputs):
        raise MedsegInputError(None, "--study and --series pull from a DICOMweb server: give --dicomweb URL")
    if dicomweb is not None:
        if inputs:
            raise MedsegInputError(None, "give either -i or --dicomweb, not both")
        if not dicomweb.startswith(("http://", "https://")):
            raise MedsegInputError(None, f"--dicomweb {dicomweb}: expected an http(s):// DICOMweb root (e.g. http://pacs:8042/dicom-web)")
        if not study:
            raise MedsegInputError(None, "--dicomweb needs --study UID (and optionally --series UID)")
    elif not inputs:
        raise MedsegInputError(None, "no input given (-i, or --dicomweb URL --study UID)")
    if ca is not None:
        if dicomweb is None and not any(t.startswith(("http://", "https://")) for t in send_to):
            raise MedsegInputError(None, "--ca is for HTTPS DICOMweb (--dicomweb, or --send-to an https:// URL)")
        ca = check_ca(ca)
    destinations = tuple(parse_destination(t, token_env, ca) for t in send_to)
    needed = {"dicomweb_client": dicomweb is not None or any(d.is_dicomweb for d in destinations),
              "pynetdicom": any(not d.is_dicomweb for d in destinations)}
    missing = [name for name, need in needed.items() if need and importlib.util.find_spec(name) is None]
    if missing:
        raise MedsegInputError(None, f"--dicomweb/--send-to need {' and '.join(missing)}: pip install 'medseg[gateway]'")
    if output is None and not destinations:
        raise MedsegOutputError("no output given (-o); without -o, --send-to is needed")
    if destinations and output_format == "nifti":
        raise MedsegOutputError("--send-to sends a DICOM SEG: use --output-format dicom-seg or both")
    with ExitStack() as stack:
        case_name = None
        if dicomweb is not None:
            assert study is not None
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medseg-dicomweb-")))
            pulled = fetch_series(dicomweb.rstrip("/"), study, series, folder, token_env, str(ca) if ca is not None else True)
            inputs, case_name = (folder,), str(pydicom.dcmread(pulled[0], stop_before_pixels=True).SeriesInstanceUID)
        if output is None:
            output = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medseg-seg-"))) / "series.seg.dcm"
        if destinations and output_format is None:
            output_format = "dicom-seg" if full_suffix(output).lower() == ".dcm" else "both"
        yield RemoteIO(tuple(inputs), output, output_format, case_name, destinations)


def send_seg(seg: Path, destinations: Sequence[Destination], calling_ae: str = CALLING_AE) -> None:
    """Send the DICOM SEG ``seg`` to every destination, in order.

    Raises:
        MedsegOutputError: a destination did not take it (one line naming it).
    """
    for destination in destinations:
        try:
            send(seg, destination, calling_ae)
        except SendError as exc:
            raise MedsegOutputError(f"--send-to {exc}") from exc


__all__ = ["CALLING_AE", "RemoteIO", "check_ca", "parse_destination", "remote_io", "send_seg"]
