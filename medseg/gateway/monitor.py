"""Monitoring endpoint (stdlib ``http.server`` in a thread; loopback by default), JSON only:

- ``GET /health``: ``{"status": "ok", "ae_title", "dicom_port", "jobs": {state: count}, "open_series"}``
- ``GET /jobs``: ``{"jobs": [{id, series_uid, study_uid, model, state, attempts, last_error, ...}]}``
- ``GET /jobs/ID``: one job
- ``POST /series/UID/complete``: close an open series now instead of waiting for ``series_timeout_s``
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medseg.gateway.queue import JobQueue

log = logging.getLogger("medseg.gateway")


class Monitor:
    """Serves the queue's state; ``health`` adds the gateway's own fields to ``/health``."""

    def __init__(self, queue: JobQueue, host: str, port: int, health: Callable[[], dict[str, Any]]) -> None:
        self.queue, self.health = queue, health
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("http %s", format % args)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                monitor._get(self)

            def do_POST(self) -> None:  # noqa: N802
                monitor._post(self)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="medseg-gateway-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, indent=1).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0].rstrip("/")
        if path == "/health":
            self._send(h, 200, {"status": "ok", **self.health(), "jobs": self.queue.counts(), "open_series": self.queue.open_series_count()})
        elif path == "/jobs":
            self._send(h, 200, {"jobs": [j.to_dict() for j in self.queue.jobs()]})
        elif path.startswith("/jobs/") and path[6:].isdigit():
            job = self.queue.job(int(path[6:]))
            self._send(h, 200, job.to_dict()) if job else self._send(h, 404, {"error": "no such job"})
        else:
            self._send(h, 404, {"error": "unknown path; try /health or /jobs"})

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[0] == "series" and parts[2] == "complete":
            ok = self.queue.trigger(parts[1])
            self._send(h, 200 if ok else 404, {"series_uid": parts[1], "triggered": ok})
        else:
            self._send(h, 404, {"error": "unknown path; POST /series/UID/complete"})


__all__ = ["Monitor"]
