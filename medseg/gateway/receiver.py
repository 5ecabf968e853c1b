"""C-STORE SCP (pynetdicom): receive instances, write each one atomically, record it, then answer.

The handler only writes the file (the exact bytes the peer sent, in DICOM file format, through
:func:`medseg.io.atomic.atomic_path`) and a row in the queue before returning ``0x0000``: an instance
whose success was sent is on disk, and nothing here waits for inference. Answers:

- ``0x0122`` (SOP class not supported): anything but the image storage classes medseg segments;
- ``0xC210`` (cannot understand): a dataset that does not decode or lacks usable UIDs;
- ``0xA900`` (data set does not match SOP class): an image without rows, columns or pixel data, or whose
  uncompressed pixel data is shorter than its rows x columns x samples x bits say (a truncated instance);
- ``0xA700`` (out of resources): the file or the queue row could not be written.

Only calling AE titles (and hosts, where given) on the allow-list get an association; others get an
A-ASSOCIATE-RJ "calling AE title not recognised". Logs carry UIDs, never patient data unless ``log_phi``.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.gateway.config import GatewayConfig
from medseg.gateway.queue import JobQueue, SeriesInfo
from medseg.io.atomic import atomic_path

log = logging.getLogger("medseg.gateway")

#: Image storage SOP classes medseg reads (single-frame series): CT, MR, PET.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SUCCESS, NOT_SUPPORTED, CANNOT_UNDERSTAND, OUT_OF_RESOURCES, MISMATCH = 0x0000, 0x0122, 0xC210, 0xA700, 0xA900


def valid_uid(value: object) -> bool:
    """A DICOM UID (digits and dots, at most 64 characters): safe as a file name."""
    return isinstance(value, str) and len(value) <= 64 and bool(_UID.match(value))


def image_problem(ds: Any, transfer_syntax: Any) -> str | None:
    """Why ``ds`` is not a usable image (missing attributes, short uncompressed pixel data), or None."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PixelData") if k not in ds]
    if missing:
        return f"no {', '.join(missing)}"
    if not transfer_syntax.is_compressed:
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
        expected *= int(ds.get("NumberOfFrames", 1) or 1)
        if len(ds.PixelData) < expected:
            return f"pixel data is {len(ds.PixelData)} bytes, {expected} expected (truncated)"
    return None


def caller_allowed(config: GatewayConfig, ae_title: str, host: str) -> bool:
    """True when ``ae_title`` (and ``host``, for entries that name one) is on the allow-list."""
    if config.allow_any_caller:
        return True
    return any(c.ae_title == ae_title.strip() and (c.host is None or c.host == host) for c in config.allowed_callers)


def phi(ds: Any) -> str:
    """Patient name and ID for logs (only used when ``log_phi`` is on)."""
    return f" patient {getattr(ds, 'PatientName', '')!s} ({getattr(ds, 'PatientID', '')})"


class StoreSCP:
    """The gateway's DICOM listener; :meth:`start` binds ``config.host:config.port`` (port 0: a free one)."""

    def __init__(self, config: GatewayConfig, queue: JobQueue, incoming: Path, tls: ssl.SSLContext | None = None) -> None:
        self.config, self.queue, self.incoming, self.tls = config, queue, incoming, tls
        self._server: Any = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import time

        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = 32
        for context in AllStoragePresentationContexts:  # all of them: non-image classes get a status, not a rejection
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers: list[Any] = [(evt.EVT_REQUESTED, self._on_requested), (evt.EVT_C_STORE, self._on_store)]
        self._server = ae.start_server(
            (self.config.host, self.config.port), block=False, evt_handlers=handlers, ssl_context=self.tls
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_requested(self, event: Any) -> None:
        """Reject associations from callers not on the allow-list (PS3.8 A-ASSOCIATE-RJ, permanent)."""
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        host = str(event.assoc.requestor.address)
        if not caller_allowed(self.config, calling, host):
            log.warning("rejected association from %s at %s: not on the allow-list", calling, host)
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # rejected-permanent, service user, calling AE not recognised
            event.assoc.kill()

    def _on_store(self, event: Any) -> int:
        return accept_instance(
            self.config, self.queue, self.incoming, str(event.request.AffectedSOPClassUID), str(event.request.AffectedSOPInstanceUID),
            str(event.assoc.requestor.ae_title).strip(), lambda: event.dataset, lambda: event.context.transfer_syntax,
            lambda: event.encoded_dataset(include_meta=True),
        )


def accept_instance(
    config: GatewayConfig, queue: JobQueue, incoming: Path, sop_class: str, sop_uid: str, calling: str,
    dataset: Callable[[], Any], transfer_syntax: Callable[[], Any], encoded: Callable[[], bytes],
) -> int:
    """Check one received instance, write it to ``incoming/SERIES/SOP.dcm`` atomically and record it in the queue;
    the DIMSE status to answer (the same checks for C-STORE and STOW-RS; see the module docstring).

    ``dataset``, ``transfer_syntax`` and ``encoded`` (the file's bytes, with its meta header) are called lazily:
    a refused SOP class is never decoded.
    """
    if sop_class not in IMAGE_SOP_CLASSES:
        log.warning("refused instance %s from %s: SOP class %s is not an image class medseg segments", sop_uid, calling, sop_class)
        return NOT_SUPPORTED
    try:
        ds = dataset()
        series_uid, study_uid = str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)
        info = SeriesInfo(
            series_uid, study_uid, str(ds.get("Modality", "")), str(ds.get("BodyPartExamined", "")),
            str(ds.get("SeriesDescription", "")), sop_class, calling, incoming / series_uid,
        )
        problem = image_problem(ds, transfer_syntax())
    except Exception as exc:  # any decoding problem of a peer's dataset is its problem, not ours
        log.warning("refused instance %s from %s: cannot decode the dataset (%s)", sop_uid, calling, type(exc).__name__)
        return CANNOT_UNDERSTAND
    if not all(valid_uid(u) for u in (sop_uid, series_uid, study_uid)):
        log.warning("refused instance from %s: invalid UID(s)", calling)
        return CANNOT_UNDERSTAND
    if problem:
        log.warning("refused instance %s of series %s from %s: %s", sop_uid, series_uid, calling, problem)
        return MISMATCH
    path = info.folder / f"{sop_uid}.dcm"
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded())
        new = queue.add_instance(info, sop_uid, path)
    except Exception as exc:  # disk full, permissions, database locked: the peer may retry later
        log.error("could not store instance %s of series %s: %s", sop_uid, series_uid, exc)
        return OUT_OF_RESOURCES
    if new:
        who = phi(ds) if config.log_phi else ""
        log.info("receiving series %s (study %s, %s) from %s%s", series_uid, study_uid, info.modality or "?", calling, who)
    return SUCCESS


__all__ = ["IMAGE_SOP_CLASSES", "StoreSCP", "accept_instance", "caller_allowed", "valid_uid"]
