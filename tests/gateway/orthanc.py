"""A real Orthanc PACS for the gateway tests: started in a temporary folder on free loopback ports.

Orthanc comes from the Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import io
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import requests

from medseg.gateway.stow import read_body

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
DICOMWEB_PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*")


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).is_file()), None)


def dicomweb_plugin() -> str | None:
    return next((hit for pattern in DICOMWEB_PLUGIN_GLOBS for hit in sorted(glob.glob(pattern))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def check_seg_of(seg: pydicom.Dataset, files: list[Path]) -> None:
    """``seg`` is a DICOM SEG of the series ``files``: references every instance, same study and frame of reference."""
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert seg.SOPClassUID == SEG_SOP_CLASS and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    (referenced_series,) = seg.ReferencedSeriesSequence
    assert referenced_series.SeriesInstanceUID == sources[0].SeriesInstanceUID
    referenced = {item.ReferencedSOPInstanceUID for item in referenced_series.ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert int(seg.NumberOfFrames) >= 1


class Orthanc:
    """One Orthanc process (AE ``ORTHANC``); ``url`` is its REST root, ``dicomweb`` its DICOMweb root."""

    def __init__(self, folder: Path, dicom_port: int | None = None, aet: str = "ORTHANC") -> None:
        self.folder, self.aet = folder, aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, modalities: dict[str, tuple[str, str, int]] | None = None, timeout: float = 30) -> Orthanc:
        binary = orthanc_binary()
        assert binary is not None
        plugin = dicomweb_plugin()
        config = {
            "Name": "medseg-test", "DicomAet": self.aet, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "StorageDirectory": str(self.folder / "storage"), "IndexDirectory": str(self.folder / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "SaveJobs": False,
            "DicomModalities": {name: list(v) for name, v in (modalities or {}).items()},
            "DicomScuTimeout": 10, "ConcurrentJobs": 4, "HttpTimeout": 30,
            "Plugins": [plugin] if plugin else [], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config, indent=1))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen([binary, str(self.folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited with {self.process.returncode}: {self.log_tail()}")
            try:
                return requests.get(f"{self.url}/system", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(up, timeout, "Orthanc to answer")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, n: int = 2000) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    # ---- REST helpers -------------------------------------------------------------------------------------
    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        requests.put(f"{self.url}/modalities/{name}", json={"AET": aet, "Host": host, "Port": port}, timeout=10).raise_for_status()

    def upload(self, files: list[Path]) -> str:
        """Upload instances (REST); returns the Orthanc ID of their series."""
        series = set()
        for path in files:
            r = requests.post(f"{self.url}/instances", data=path.read_bytes(), timeout=30)
            r.raise_for_status()
            series.add(r.json()["ParentSeries"])
        assert len(series) == 1, series
        return series.pop()

    def store_to(self, modality: str, resources: list[str], asynchronous: bool = False) -> dict[str, Any]:
        """C-STORE resources (Orthanc IDs) to a configured modality (``/modalities/NAME/store``)."""
        body = {"Resources": resources, "Asynchronous": asynchronous, "Timeout": 30}
        r = requests.post(f"{self.url}/modalities/{modality}/store", json=body, timeout=60)
        r.raise_for_status()
        return r.json()

    def seg_instances(self) -> list[str]:
        """Orthanc IDs of the stored DICOM SEG instances."""
        r = requests.post(f"{self.url}/tools/find", json={"Level": "Series", "Query": {"Modality": "SEG"}, "Expand": True}, timeout=30)
        r.raise_for_status()
        return [i for s in r.json() for i in s["Instances"]]

    def dataset(self, instance_id: str) -> pydicom.Dataset:
        r = requests.get(f"{self.url}/instances/{instance_id}/file", timeout=30)
        r.raise_for_status()
        return pydicom.dcmread(io.BytesIO(r.content))


class HttpsProxy:
    """HTTPS with a bearer token in front of a plain-HTTP server (Orthanc): what a hospital's DICOMweb endpoint
    looks like. Orthanc's own HTTPS (``SslEnabled``) crashes the Debian build 1.10.1 on the first request, hence
    this stand-in; requests without ``Authorization: Bearer TOKEN`` get 401 and are not forwarded."""

    def __init__(self, target: str, cert: Path, key: Path, token: str) -> None:
        proxy = self
        self.target, self.token, self.refused = target.rstrip("/"), token, 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy._forward(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                proxy._forward(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _forward(self, h: BaseHTTPRequestHandler, method: str) -> None:
        body = read_body(h) if method == "POST" else None
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            status, headers, content = 401, {"Content-Type": "text/plain"}, b"token required"
        else:
            keep = {k: v for k, v in h.headers.items() if k.lower() in ("content-type", "accept")}
            r = requests.request(method, self.target + h.path, headers=keep, data=body, timeout=60)
            status, headers, content = r.status_code, {"Content-Type": r.headers.get("Content-Type", "")}, r.content
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
