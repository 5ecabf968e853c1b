"""Send a DICOM file (the SEG) to a destination: C-STORE SCU (pynetdicom) or STOW-RS (dicomweb-client).

Any failure (destination down, association rejected, failure status, HTTP error) is a :class:`SendError`
with a one-line message; the job machinery retries it with backoff. Sending the same file twice sends the
same SOP Instance UID, which a PACS stores once.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

from medseg.gateway.config import Destination

#: C-STORE statuses that mean "stored" (success, and the warnings of PS3.4 B.2.3: coercion, elements discarded).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class SendError(Exception):
    """A destination did not take the file (one line; retried by the job machinery)."""


def send_dimse(
    path: Path, destination: Destination, calling_ae: str, timeout_s: float = 30.0, tls: ssl.SSLContext | None = None
) -> None:
    """C-STORE ``path`` to ``AE@host:port`` (TLS when ``tls`` is given)."""
    import pydicom
    from pynetdicom import AE

    ae_title, host, port = destination.dimse()
    ds = pydicom.dcmread(str(path))
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=ae_title, tls_args=(tls, host) if tls is not None else None)
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "is not reachable (no association)"
        raise SendError(f"{destination.target}: {why}")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        raise SendError(f"{destination.target}: no C-STORE response (connection lost or timed out)")
    if int(status.Status) not in _STORED:
        comment = f" ({status.ErrorComment})" if "ErrorComment" in status else ""
        raise SendError(f"{destination.target}: C-STORE failed with status 0x{int(status.Status):04X}{comment}")


def dicomweb_client(url: str, token_env: str | None = None, timeout_s: float = 30.0, verify: bool | str = True):  # noqa: ANN201
    """A ``dicomweb_client.DICOMwebClient`` for ``url`` (bearer token from ``$token_env``), without its own retries.

    ``verify``: True checks HTTPS certificates against the system's trust store (or ``REQUESTS_CA_BUNDLE``);
    a path checks them against that CA bundle only (a destination's ``ca``), whatever the environment says.
    """
    import requests
    from dicomweb_client.api import DICOMwebClient

    class PinnedSession(requests.Session):
        """requests prefers ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` to a session's own ``verify``; a CA bundle
        named in the config must win."""

        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            merged = super().merge_environment_settings(*args, **kwargs)
            merged["verify"] = self.verify
            return merged

    session = requests.Session() if verify is True else PinnedSession()
    session.verify = verify
    headers = {}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise SendError(f"{url}: environment variable {token_env} (the DICOMweb token) is not set")
        headers["Authorization"] = f"Bearer {token}"
    client = DICOMwebClient(url=url, session=session, headers=headers, timeout=timeout_s)
    client.set_http_retry_params(retry=False)  # the job queue retries, with its own backoff
    return client


def send_stow(path: Path, destination: Destination, timeout_s: float = 30.0) -> None:
    """STOW-RS ``path`` to a DICOMweb root (``.../dicom-web``)."""
    import pydicom
    import requests

    ds = pydicom.dcmread(str(path))
    try:
        verify = str(destination.ca) if destination.ca is not None else True
        dicomweb_client(destination.target, destination.token_env, timeout_s, verify).store_instances([ds])
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        raise SendError(f"{destination.target}: STOW-RS failed with HTTP {code}") from exc
    except requests.exceptions.SSLError as exc:
        raise SendError(f"{destination.target}: TLS failed (certificate not trusted? give the destination a ca)") from exc
    except requests.RequestException as exc:
        raise SendError(f"{destination.target}: is not reachable ({type(exc).__name__})") from exc


def send(path: Path, destination: Destination, calling_ae: str, tls: ssl.SSLContext | None = None) -> None:
    """Send ``path`` to ``destination`` by the protocol its target names."""
    if destination.is_dicomweb:
        send_stow(path, destination)
    else:
        send_dimse(path, destination, calling_ae, tls=tls)


__all__ = ["SendError", "dicomweb_client", "send", "send_dimse", "send_stow"]
