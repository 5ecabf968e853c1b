"""The gateway's persistent state in one SQLite file: received instances, series and jobs.

Everything that must survive a crash (SIGKILL, power loss) lives here, written in transactions with
``synchronous=FULL``: a series is ``open`` while instances arrive and ``closed`` once a job was made for it
(or it was dropped); a job moves ``pending -> running -> sending -> done`` (or ``failed``). A job is unique
per (series UID, model), so a series sent twice is segmented once. On start, :meth:`JobQueue.recover`
puts jobs that were ``running``/``sending`` when the process died back to ``pending``; a job whose SEG
was already written resends that same file (same SOP Instance UID, so the PACS keeps one copy).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("pending", "running", "sending", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, modality TEXT, body_part TEXT, description TEXT,
    sop_class TEXT, calling_ae TEXT, folder TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
    first_received REAL NOT NULL, last_received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, study_uid TEXT NOT NULL, model TEXT NOT NULL,
    route TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '', next_attempt REAL NOT NULL DEFAULT 0, created REAL NOT NULL,
    started REAL, finished REAL, seg_path TEXT, sent TEXT NOT NULL DEFAULT '[]', warnings TEXT NOT NULL DEFAULT '[]',
    UNIQUE(series_uid, model));
"""


@dataclass(frozen=True)
class SeriesInfo:
    """What routing needs to know about a series (from its first instance) and how many instances arrived."""

    series_uid: str
    study_uid: str
    modality: str
    body_part: str
    description: str
    sop_class: str
    calling_ae: str
    folder: Path
    n_instances: int = 0


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table."""

    id: int
    series_uid: str
    study_uid: str
    model: str
    route: str
    state: str
    attempts: int
    last_error: str
    next_attempt: float
    created: float
    started: float | None
    finished: float | None
    seg_path: str | None
    sent: tuple[str, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["sent"], d["warnings"] = list(self.sent), list(self.warnings)
        return d


class JobQueue:
    """Thread-safe access to ``queue.sqlite`` (one connection, one lock; WAL journal, full fsync)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ---- series and instances -------------------------------------------------------------------------
    def add_instance(self, info: SeriesInfo, sop_uid: str, path: Path, now: float | None = None) -> bool:
        """Record a received instance (its file is already on disk); True when its series is new or reopened."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT state FROM series WHERE series_uid=?", (info.series_uid,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO series VALUES (?,?,?,?,?,?,?,?,'open',?,?)",
                    (info.series_uid, info.study_uid, info.modality, info.body_part, info.description, info.sop_class,
                     info.calling_ae, str(info.folder), now, now),
                )
            else:
                db.execute("UPDATE series SET last_received=?, state='open' WHERE series_uid=?", (now, info.series_uid))
            db.execute("INSERT OR REPLACE INTO instances VALUES (?,?,?,?)", (sop_uid, info.series_uid, str(path), now))
        return row is None or row["state"] != "open"

    def idle_series(self, timeout_s: float, now: float | None = None) -> list[SeriesInfo]:
        """Open series with no instance for ``timeout_s`` seconds (complete), oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT s.*, (SELECT COUNT(*) FROM instances i WHERE i.series_uid=s.series_uid) AS n FROM series s "
                "WHERE state='open' AND last_received<=? ORDER BY last_received", (now - timeout_s,),
            ).fetchall()
        return [_series(r) for r in rows]

    def trigger(self, series_uid: str) -> bool:
        """Mark an open series complete now (it is closed at the next scheduler tick); False if unknown."""
        with self._tx() as db:
            return db.execute("UPDATE series SET last_received=0 WHERE series_uid=? AND state='open'", (series_uid,)).rowcount > 0

    def close_series(self, series_uid: str, state: str = "closed") -> None:
        with self._tx() as db:
            db.execute("UPDATE series SET state=? WHERE series_uid=?", (state, series_uid))

    def forget_instances(self, series_uid: str) -> None:
        """Drop the instance rows of a series whose files were removed."""
        with self._tx() as db:
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))

    def open_series_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM series WHERE state='open'").fetchone()[0])

    # ---- jobs ------------------------------------------------------------------------------------------
    def add_job(self, info: SeriesInfo, model: str, route: str, now: float | None = None) -> int | None:
        """A pending job for (series, model); None when one exists already (idempotent)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (series_uid, study_uid, model, route, created) VALUES (?,?,?,?,?)",
                (info.series_uid, info.study_uid, model, route, now),
            )
            db.execute("UPDATE series SET state='closed' WHERE series_uid=?", (info.series_uid,))
            return int(cur.lastrowid) if cur.rowcount and cur.lastrowid is not None else None

    def claim(self, limit: int, now: float | None = None) -> list[Job]:
        """Move up to ``limit`` due pending jobs to ``running`` (attempts + 1) and return them."""
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM jobs WHERE state='pending' AND next_attempt<=? ORDER BY next_attempt, id LIMIT ?", (now, limit))]
            for job_id in ids:
                db.execute("UPDATE jobs SET state='running', attempts=attempts+1, started=? WHERE id=?", (now, job_id))
            rows = [db.execute("SELECT * FROM jobs WHERE id=?", (i,)).fetchone() for i in ids]
        return [_job(r) for r in rows]

    def update(self, job_id: int, **fields: Any) -> None:
        """Set columns of a job (``sent``/``warnings`` lists are stored as JSON)."""
        for key in ("sent", "warnings"):
            if key in fields:
                fields[key] = json.dumps(list(fields[key]))
        unknown = set(fields) - set(Job.__dataclass_fields__)
        if unknown or fields.get("state", "pending") not in STATES:
            raise ValueError(f"bad job update {fields}")
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?", (*fields.values(), job_id))

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def jobs(self, state: str | None = None) -> list[Job]:
        with self._lock:
            rows = (self._db.execute("SELECT * FROM jobs ORDER BY id") if state is None
                    else self._db.execute("SELECT * FROM jobs WHERE state=? ORDER BY id", (state,))).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r[0]: r[1] for r in rows}

    def recover(self) -> int:
        """After a crash: jobs left ``running``/``sending`` become ``pending`` again; returns how many."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET state='pending', next_attempt=0 WHERE state IN ('running','sending')").rowcount

    def series_info(self, series_uid: str) -> SeriesInfo | None:
        with self._lock:
            row = self._db.execute(
                "SELECT s.*, (SELECT COUNT(*) FROM instances i WHERE i.series_uid=s.series_uid) AS n FROM series s WHERE series_uid=?",
                (series_uid,),
            ).fetchone()
        return None if row is None else _series(row)


def _series(row: sqlite3.Row) -> SeriesInfo:
    return SeriesInfo(row["series_uid"], row["study_uid"], row["modality"] or "", row["body_part"] or "", row["description"] or "",
                      row["sop_class"] or "", row["calling_ae"] or "", Path(row["folder"]), int(row["n"]))


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d["sent"], d["warnings"] = tuple(json.loads(d["sent"])), tuple(json.loads(d["warnings"]))
    return Job(**d)


__all__ = ["Job", "JobQueue", "STATES", "SeriesInfo"]
