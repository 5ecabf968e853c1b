"""DICOMweb STOW-RS receiver (optional; ``dicomweb_receiver`` in ``gateway.yaml``): ``POST .../studies[/UID]``
with a ``multipart/related; type="application/dicom"`` body, one DICOM file per part.

Each instance goes through the same checks, atomic write and queue row as a C-STORE
(:func:`medseg.gateway.receiver.accept_instance`), so STOW-RS series are grouped, routed and segmented like
DIMSE ones. The answer is the PS3.18 store response (``application/dicom+json``: ReferencedSOPSequence and
FailedSOPSequence with the DIMSE status as FailureReason): 200 when all instances were stored, 202 when some,
409 when none. With ``token_env``, requests need ``Authorization: Bearer <token>`` (else 401); with ``cert``
and ``key``, it speaks HTTPS only. Hosts outside ``allowed_hosts`` get 403, a body over ``max_body_mb`` 413
(by its Content-Length before it is read, a chunked one as soon as it passes the limit; the checks that need
no body also answer ``Expect: 100-continue``). Nothing here waits for inference.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from medseg.errors import MedsegConfigError
from medseg.gateway.config import GatewayConfig
from medseg.gateway.queue import JobQueue
from medseg.gateway.receiver import CANNOT_UNDERSTAND, MISMATCH, SUCCESS, accept_instance

log = logging.getLogger("medseg.gateway")
#: The calling "AE" recorded for series that arrived by STOW-RS.
STOW_CALLER = "STOW-RS"
_PATH = re.compile(r"^(?:/[^?]*)?/studies(?:/(?P<study>[0-9.]+))?/?$")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
#: A refused request's body up to this size is read before the answer, so that the client sees it.
_SMALL_BODY = 64 << 20


class BodyTooLarge(Exception):
    """A request body longer than the receiver's limit (``max_body_mb``)."""


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The bodies of the parts of a ``multipart/related`` message (RFC 2046 5.1.1), headers removed.

    Split here by the delimiter ``CRLF--boundary`` (a few lines): the stdlib ``email`` parser is line oriented
    and built for text mail, not for multi-megabyte binary parts.
    """
    parts = []
    for chunk in (b"\r\n" + body).split(b"\r\n--" + boundary)[1:]:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        _, sep, content = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(content)
    return parts


def _chunked(h: BaseHTTPRequestHandler) -> bool:
    return "chunked" in h.headers.get("Transfer-Encoding", "").lower()


def read_body(h: BaseHTTPRequestHandler, limit: int | None = None) -> bytes:
    """A request's body, by Content-Length or chunked transfer coding (dicomweb-client sends large studies chunked).

    Raises:
        BodyTooLarge: the body is longer than ``limit`` bytes: a Content-Length before anything is read, a
            chunked body at the chunk that passes the limit (that chunk is not read).
    """
    if _chunked(h):
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if limit is not None and total > limit:
                raise BodyTooLarge(f"chunked body passes {limit} bytes")
            chunks.append(h.rfile.read(size))
            h.rfile.readline()  # the CRLF after each chunk
    length = int(h.headers.get("Content-Length") or 0)
    if limit is not None and length > limit:
        raise BodyTooLarge(f"Content-Length {length} is over {limit} bytes")
    return h.rfile.read(length)


def _drain(h: BaseHTTPRequestHandler, seconds: float = 2.0) -> None:
    """After an answer sent before the body was read: end our side, and read (and drop) what the client still
    sends for up to ``seconds``, so that closing does not reset the connection before it has read the answer."""
    sock = h.connection
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(1 << 16):
                break
    except OSError:  # the client went away or stayed silent: nothing more to do
        pass


def _uid_item(sop_class: str, sop_uid: str, status: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"00081150": {"vr": "UI", "Value": [sop_class]}, "00081155": {"vr": "UI", "Value": [sop_uid]}}
    if status is not None:
        item["00081197"] = {"vr": "US", "Value": [status]}
    return item


class _Server(ThreadingHTTPServer):
    """With ``tls`` set, the TLS handshake happens in the request's own thread (stdlib wraps the listening
    socket, which shakes hands in the accept loop: one silent client would block every other)."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request.settimeout(60)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("STOW-RS connection from %s failed: %s", client_address[0], sys.exc_info()[1])


class StowReceiver:
    """The STOW-RS endpoint in a thread; :meth:`start` binds ``host:port`` (port 0: a free one)."""

    def __init__(self, config: GatewayConfig, queue: JobQueue, incoming: Path) -> None:
        settings = config.dicomweb_receiver
        assert settings is not None
        self.config, self.queue, self.incoming, self.settings = config, queue, incoming, settings
        self.token: str | None = None
        if settings.token_env:
            self.token = os.environ.get(settings.token_env)
            if not self.token:
                raise MedsegConfigError(f"dicomweb_receiver.token_env: environment variable {settings.token_env} is not set")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("stow-rs %s", format % args)

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                receiver._post(self)

            def handle_expect_100(self) -> bool:
                """``Expect: 100-continue``: refuse before the client sends its body, when the headers already say so."""
                refusal = receiver._check_headers(self)
                if refusal is None:
                    return super().handle_expect_100()
                receiver._refuse(self, *refusal, read=False)
                return False

        context = None
        if settings.cert is not None and settings.key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(str(settings.cert), str(settings.key))
            except (OSError, ssl.SSLError) as exc:
                raise MedsegConfigError(f"dicomweb_receiver: cannot load the certificate or key ({exc})") from exc
        self._server = _Server((settings.host, settings.port), Handler)
        self._server.tls = context
        self._thread = threading.Thread(target=self._server.serve_forever, name="medseg-gateway-stow", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.settings.cert is not None else "http"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- one request ----------------------------------------------------------------------------------
    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/dicom+json" if code in (200, 202, 409) else "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _refuse(self, h: BaseHTTPRequestHandler, code: int, error: str, extra: dict[str, str] | None = None, read: bool = True) -> None:
        """Answer an error and close. A small body is read first, a larger one (or with ``read=False``) drained
        after the answer (closing on unread data resets the connection, and the client would not see the answer)."""
        small = int(h.headers.get("Content-Length") or 0) <= min(_SMALL_BODY, self.settings.max_body_bytes) and not _chunked(h)
        if read and small:
            read_body(h)
        h.close_connection = True
        self._send(h, code, {"error": error}, extra)
        if not (read and small):
            _drain(h)

    def _check_headers(self, h: BaseHTTPRequestHandler) -> tuple[int, str, dict[str, str] | None] | None:
        """``(status, error, headers)`` when the request line and headers alone refuse the request: a host not
        allowed (403), no or a wrong token (401), a Content-Length over the limit (413)."""
        host = h.client_address[0]
        if not self.settings.host_allowed(host):
            log.warning("refused STOW-RS request from %s: not on the allow-list", host)
            return 403, f"host {host} may not store here", None
        if self.token is not None:
            given = h.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                log.warning("refused STOW-RS request from %s: missing or wrong bearer token", host)
                return 401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="medseg"'}
        if not _chunked(h) and int(h.headers.get("Content-Length") or 0) > self.settings.max_body_bytes:
            return self._too_large(h)
        return None

    def _too_large(self, h: BaseHTTPRequestHandler) -> tuple[int, str, None]:
        log.warning("refused STOW-RS request from %s: body over max_body_mb (%g MB)", h.client_address[0], self.settings.max_body_mb)
        return 413, f"the request body is larger than {self.settings.max_body_mb:g} MB (max_body_mb)", None

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        refusal = self._check_headers(h)
        if refusal is not None:
            self._refuse(h, *refusal)
            return
        match = _PATH.match(h.path)
        content_type = h.headers.get("Content-Type", "")
        boundary = _BOUNDARY.search(content_type)
        if match is None:
            self._refuse(h, 404, "STOW-RS is POST .../studies or .../studies/UID")
            return
        if not content_type.lower().startswith("multipart/related") or boundary is None or "application/dicom" not in content_type.lower():
            self._refuse(h, 415, 'expected Content-Type: multipart/related; type="application/dicom"; boundary=...')
            return
        try:
            body = read_body(h, self.settings.max_body_bytes)
        except BodyTooLarge:
            self._refuse(h, *self._too_large(h), read=False)
            return
        parts = split_multipart(body, boundary.group(1).encode())
        stored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for part in parts:
            sop_class, sop_uid, status = self._store(part, match["study"])
            (stored if status == SUCCESS else failed).append(_uid_item(sop_class, sop_uid, None if status == SUCCESS else status))
        answer: dict[str, Any] = {}
        if stored:
            answer["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            answer["00081198"] = {"vr": "SQ", "Value": failed}
        log.debug("STOW-RS from %s: %d stored, %d failed", h.client_address[0], len(stored), len(failed))
        self._send(h, 200 if stored and not failed else 202 if stored else 409, answer)

    def _store(self, part: bytes, study: str | None) -> tuple[str, str, int]:
        """``(sop_class, sop_uid, status)`` of one part."""
        import pydicom

        try:
            ds = pydicom.dcmread(io.BytesIO(part))
            sop_class, sop_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
            transfer_syntax = ds.file_meta.TransferSyntaxUID
        except Exception as exc:  # a part that is not a DICOM file: its sender's problem
            log.warning("refused a STOW-RS part: not a readable DICOM file (%s)", type(exc).__name__)
            return "", "", CANNOT_UNDERSTAND
        if study is not None and str(ds.get("StudyInstanceUID", "")) != study:
            log.warning("refused instance %s: not of study %s named in the STOW-RS request", sop_uid, study)
            return sop_class, sop_uid, MISMATCH
        status = accept_instance(self.config, self.queue, self.incoming, sop_class, sop_uid, STOW_CALLER,
                                 lambda: ds, lambda: transfer_syntax, lambda: part)
        return sop_class, sop_uid, status


__all__ = ["STOW_CALLER", "BodyTooLarge", "StowReceiver", "read_body", "split_multipart"]
