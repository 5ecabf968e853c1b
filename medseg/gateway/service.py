"""The gateway: C-STORE SCP (+ optional STOW-RS receiver) + persistent queue + scheduler + workers + senders + monitoring endpoint.

A scheduler thread ticks every ``TICK_S``: series idle for ``series_timeout_s`` are routed (a job each, or
dropped/kept when no rule matches), and due pending jobs are handed to ``concurrency`` worker threads. A
worker segments the series (:func:`medseg.gateway.jobs.segment_series`, imported lazily so that receiving
never waits for torch), records the SEG path, then sends it to every destination not yet reached. A
destination that fails puts the job back to ``pending`` with ``last_error`` and a doubling delay; a series
that cannot be segmented is ``failed`` with the one-line error. The gateway itself keeps running.
"""

from __future__ import annotations

import logging
import shutil
import signal
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medseg.errors import MedsegConfigError, MedsegError
from medseg.gateway.config import GatewayConfig
from medseg.gateway.monitor import Monitor
from medseg.gateway.queue import Job, JobQueue, SeriesInfo
from medseg.gateway.receiver import StoreSCP
from medseg.gateway.router import route_series
from medseg.gateway.sender import SendError, send
from medseg.gateway.stow import StowReceiver
from medseg.io.atomic import atomic_dir, ensure_writable_dir

log = logging.getLogger("medseg.gateway")
TICK_S = 0.2
#: ``segment(series_folder, model_dir, out_dir, device)`` -> an object with ``seg_path`` and ``warnings``.
Segmenter = Callable[[Path, Path, Path, str], Any]


def _default_segmenter(series_folder: Path, model_dir: Path, out_dir: Path, device: str) -> Any:
    from medseg.gateway.jobs import segment_series

    return segment_series(series_folder, model_dir, out_dir, device)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (MedsegError, SendError)) else f"unexpected {type(exc).__name__}: {text[:300]}"


class Gateway:
    """One DICOM node. ``start()`` returns once it listens; ``stop()`` waits for running jobs to finish."""

    def __init__(self, config: GatewayConfig, segmenter: Segmenter | None = None) -> None:
        self.config = config
        self.segment = segmenter or _default_segmenter
        self.tls: ssl.SSLContext | None = None
        self.client_tls: ssl.SSLContext | None = None
        self.incoming = config.work_dir / "incoming"
        self.outputs = config.work_dir / "jobs"
        self._stop = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.queue: JobQueue
        self.scp: StoreSCP
        self.stow: StowReceiver | None = None
        self.monitor: Monitor

    # ---- life cycle ------------------------------------------------------------------------------------
    def start(self) -> Gateway:
        for i, route in enumerate(self.config.routes):
            if not (route.model / "medseg.json").is_file():
                raise MedsegConfigError(f"routes.{i}.model: {route.model}: not a model package folder (no medseg.json)")
        if self.config.tls is not None:
            try:
                self.tls, self.client_tls = self.config.tls.server_context(), self.config.tls.client_context()
            except (OSError, ssl.SSLError) as exc:
                raise MedsegConfigError(f"tls: cannot load the certificate or key ({exc})") from exc
        ensure_writable_dir(self.config.work_dir)
        self.queue = JobQueue(self.config.work_dir / "queue.sqlite")
        recovered = self.queue.recover()
        if recovered:
            log.warning("resuming %d job(s) interrupted by a restart", recovered)
        self.scp = StoreSCP(self.config, self.queue, self.incoming, self.tls)
        self.stow = StowReceiver(self.config, self.queue, self.incoming) if self.config.dicomweb_receiver else None
        self.scp.start()
        if self.stow is not None:
            self.stow.start()
            log.info("STOW-RS receiver on %s://%s:%d/studies", self.stow.scheme, self.stow.settings.host, self.stow.port)
        self.monitor = Monitor(self.queue, self.config.http.host, self.config.http.port, self._health)
        self.monitor.start()
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="medseg-job")
        self._thread = threading.Thread(target=self._loop, name="medseg-gateway-scheduler", daemon=True)
        self._thread.start()
        log.info("gateway %s listening for DICOM on %s:%d; monitoring on http://%s:%d/health", self.config.ae_title,
                 self.config.host, self.scp.port, self.config.http.host, self.monitor.port)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.scp.stop()
        if self.stow is not None:
            self.stow.stop()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True)
        self.monitor.stop()
        self.queue.close()
        log.info("gateway stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT (the CLI)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        while not self._stop.wait(0.5):
            pass
        self.stop()

    def _health(self) -> dict[str, Any]:
        web = {"dicomweb_port": self.stow.port} if self.stow is not None else {}
        return {"ae_title": self.config.ae_title, "dicom_port": self.scp.port, **web, "busy_workers": self._busy}

    # ---- scheduling ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # the scheduler must survive anything (a locked database, a full disk, ...)
                log.exception("scheduler tick failed")

    def tick(self) -> None:
        """Close idle series into jobs, then start due jobs on free workers."""
        for series in self.queue.idle_series(self.config.series_timeout_s):
            self._close(series)
        with self._busy_lock:
            free = self.config.concurrency - self._busy
            jobs = self.queue.claim(free)
            self._busy += len(jobs)
        for job in jobs:
            self._pool.submit(self._run, job)

    def _close(self, series: SeriesInfo) -> None:
        route = route_series(self.config.routes, series)
        if route is None:
            log.info("series %s (%s, %d instances) matches no route: %s", series.series_uid, series.modality or "?",
                     series.n_instances, "dropped" if self.config.unmatched == "drop" else "kept")
            if self.config.unmatched == "drop":
                self._remove_received(series.series_uid, series.folder)
            self.queue.close_series(series.series_uid, "unrouted")
            return
        job_id = self.queue.add_job(series, str(route.model), route.name)
        if job_id is None:
            log.info("series %s was already segmented with %s; the instances received again are ignored", series.series_uid, route.name)
            if not self.config.keep_received:
                self._remove_received(series.series_uid, series.folder)
        else:
            log.info("job %d: series %s complete (%d instances), route %s", job_id, series.series_uid, series.n_instances, route.name)

    # ---- one job ---------------------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        try:
            self._execute(job)
        except Exception as exc:  # never lose a worker thread; the job records why
            log.exception("job %d: internal error", job.id)
            self.queue.update(job.id, state="failed", last_error=_one_line(exc), finished=time.time())
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _execute(self, job: Job) -> None:
        seg = Path(job.seg_path) if job.seg_path else None
        if seg is None or not seg.is_file():
            series = self.queue.series_info(job.series_uid)
            if series is None:
                raise MedsegError(f"series {job.series_uid} is not in the queue")
            log.info("job %d: segmenting series %s with %s (attempt %d)", job.id, job.series_uid, job.route, job.attempts)
            try:
                result = self.segment(series.folder, Path(job.model), self.outputs / str(job.id), self.config.device)
            except Exception as exc:
                log.error("job %d: series %s failed: %s", job.id, job.series_uid, _one_line(exc))
                self.queue.update(job.id, state="failed", last_error=_one_line(exc), finished=time.time())
                return
            seg = Path(result.seg_path)
            for note in result.warnings:
                log.warning("job %d: %s", job.id, note)
            self._archive(job, seg.parent)
            self.queue.update(job.id, state="sending", seg_path=str(seg), warnings=list(result.warnings))
        else:
            self.queue.update(job.id, state="sending")
        sent = list(job.sent)
        for destination in self.config.destinations:
            if destination.target in sent:
                continue
            try:
                send(seg, destination, self.config.ae_title, self.client_tls if destination.tls else None)
            except SendError as exc:
                self._retry_later(job, str(exc))
                return
            sent.append(destination.target)
            self.queue.update(job.id, sent=sent)
            log.info("job %d: SEG of series %s sent to %s", job.id, job.series_uid, destination.target)
        self.queue.update(job.id, state="done", last_error="", finished=time.time())
        log.info("job %d: done", job.id)
        self._clean(job)

    def _retry_later(self, job: Job, error: str) -> None:
        retry = self.config.retry
        if retry.max_attempts and job.attempts >= retry.max_attempts:
            log.error("job %d: giving up after %d attempts: %s", job.id, job.attempts, error)
            self.queue.update(job.id, state="failed", last_error=error, finished=time.time())
            return
        delay = min(retry.initial_s * 2 ** max(job.attempts - 1, 0), retry.max_s)
        log.warning("job %d: %s; retrying in %.1f s", job.id, error, delay)
        self.queue.update(job.id, state="pending", last_error=error, next_attempt=time.time() + delay)

    def _archive(self, job: Job, out_dir: Path) -> None:
        """Copy the job's outputs (SEG, NIfTI, report, preview) to ``archive_dir/STUDY/SERIES/ROUTE``."""
        if self.config.archive_dir is None:
            return
        target = self.config.archive_dir / job.study_uid / job.series_uid / job.route
        with atomic_dir(target, force=True) as tmp:
            for path in out_dir.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    shutil.copy2(path, tmp / path.name)

    def _remove_received(self, series_uid: str, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        self.queue.forget_instances(series_uid)

    def _clean(self, job: Job) -> None:
        shutil.rmtree(self.outputs / str(job.id), ignore_errors=True)
        if not self.config.keep_received:
            info = self.queue.series_info(job.series_uid)
            if info is not None:
                self._remove_received(job.series_uid, info.folder)


__all__ = ["Gateway", "Segmenter"]
