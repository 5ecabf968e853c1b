"""The STOW-RS receiver's limits, against the real receiver on loopback: a maximum body size (413 before the
body is read, chunked bodies as soon as they pass it) and an allow-list of hosts (403)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from medseg.errors import MedsegConfigError
from medseg.gateway.queue import JobQueue
from medseg.gateway.sender import dicomweb_client
from medseg.gateway.stow import StowReceiver
from tests.gateway.conftest import gateway_config

CT = Path(get_testdata_file("CT_small.dcm"))  # 39 KB: a real CT image (pydicom's test data)
LIMIT_MB = 0.1  # 104,857 bytes: two CT_small instances fit, three do not


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Any]:
    """``start_receiver(**dicomweb_receiver settings)``: a running STOW-RS receiver on loopback, stopped after the test."""
    started: list[tuple[StowReceiver, JobQueue]] = []
    model = tmp_path / "model"  # the receiver never reads the route's model: no series is completed here
    model.mkdir()

    def start(**settings: Any) -> StowReceiver:
        work = tmp_path / f"work{len(started)}"
        config = gateway_config(work, model, dicomweb_receiver={"host": "127.0.0.1", "port": 0, **settings})
        work.mkdir()
        queue = JobQueue(work / "queue.sqlite")
        receiver = StowReceiver(config, queue, work / "incoming")
        receiver.start()
        started.append((receiver, queue))
        return receiver

    yield start
    for receiver, queue in started:
        receiver.stop()
        queue.close()


def stored(receiver: StowReceiver) -> list[Path]:
    return sorted(receiver.incoming.rglob("*.dcm")) if receiver.incoming.exists() else []


def raw_request(port: int, head: dict[str, str], body: bytes = b"") -> bytes:
    """Send a POST's head (and ``body``, possibly partial) and return what the receiver answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = ["POST /studies HTTP/1.1", "Host: 127.0.0.1",
                 'Content-Type: multipart/related; type="application/dicom"; boundary=b', *(f"{k}: {v}" for k, v in head.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while chunk := sock.recv(65536):  # socket.timeout (10 s) if the receiver waited for the rest of the body
            answer += chunk
        return answer


def test_bodies_over_max_body_mb_get_413(start_receiver) -> None:
    receiver = start_receiver(max_body_mb=LIMIT_MB)
    url = f"http://127.0.0.1:{receiver.port}"
    limit = int(LIMIT_MB * (1 << 20))
    ct = pydicom.dcmread(CT)

    # a Content-Length over the limit: 413 at once, although no byte of the body was sent (with and without Expect)
    assert raw_request(receiver.port, {"Content-Length": str(limit + 1)}).startswith(b"HTTP/1.1 413 ")
    assert raw_request(receiver.port, {"Content-Length": str(10 << 30), "Expect": "100-continue"}).startswith(b"HTTP/1.1 413 ")
    # chunked: 413 as soon as the chunks pass the limit, before the body's end (never sent here)
    chunk = b"x" * 50_000
    answer = raw_request(receiver.port, {"Transfer-Encoding": "chunked"}, b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"max_body_mb" in answer
    # what clients do: a whole body, by length and chunked (dicomweb-client), is answered 413 too
    too_much = requests.post(f"{url}/studies", data=b"\0" * (limit + 1000), timeout=10,
                             headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'})
    assert too_much.status_code == 413 and "0.1 MB" in too_much.json()["error"]
    client = dicomweb_client(url)
    client.set_chunk_size(10_000)
    with pytest.raises(requests.HTTPError) as info:
        client.store_instances([ct] * 3)
    assert info.value.response.status_code == 413
    assert stored(receiver) == []

    # under the limit, stored as usual (the receiver kept running)
    response = dicomweb_client(url).store_instances([ct])
    assert len(response.ReferencedSOPSequence) == 1 and len(stored(receiver)) == 1


def test_only_allowed_hosts_may_store(start_receiver) -> None:
    ct = pydicom.dcmread(CT)
    strangers = start_receiver(allowed_hosts=["10.20.30.0/24", "192.168.1.7"])
    with pytest.raises(requests.HTTPError) as info:
        dicomweb_client(f"http://127.0.0.1:{strangers.port}").store_instances([ct])
    assert info.value.response.status_code == 403 and "127.0.0.1" in info.value.response.json()["error"]
    assert raw_request(strangers.port, {"Content-Length": "100", "Expect": "100-continue"}).startswith(b"HTTP/1.1 403 ")
    assert stored(strangers) == []

    friends = start_receiver(allowed_hosts=["10.20.30.0/24", "127.0.0.1"])
    response = dicomweb_client(f"http://127.0.0.1:{friends.port}").store_instances([ct])
    assert len(response.ReferencedSOPSequence) == 1 and len(stored(friends)) == 1


@pytest.mark.parametrize("settings, message", [
    ({"allowed_hosts": ["pacs.example.org"]}, "dicomweb_receiver.allowed_hosts: .*'pacs.example.org' is not an IP address or network"),
    ({"max_body_mb": 0}, "dicomweb_receiver.max_body_mb"),
])
def test_limits_are_validated(settings: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(MedsegConfigError, match=message) as info:
        gateway_config(tmp_path, tmp_path, dicomweb_receiver=settings)
    assert "\n" not in str(info.value)
