"""Long work run in the background with its progress kept in the database.

A page calls :func:`start` with the work to do; the work runs in a thread of the serving
process, in transactions of its own, and reports progress through :class:`Progress`. Any
process can show the progress (it is a row), so the page that polls it may be served by
another worker. Work whose process died stops sending heartbeats and is reported as
interrupted once it has been silent for ``STALE_AFTER``.

The work gets the staff principal who started it: it calls the same services with the
same permissions as the page would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.errors import NotFound, Problem
from mercato.jobs.models import BackgroundJob

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=5)
KEEP_FILES = timedelta(days=1)
# Progress is written at most this often: a row update per item would cost more than the work.
WRITE_EVERY_SECONDS = 0.5


@dataclass(frozen=True)
class JobFile:
    """A file the work made, for the user to download (an export)."""

    name: str
    media_type: str
    content: str


@dataclass
class Outcome:
    """What the work ends with: a report (shown as a list of figures and lines) and an
    optional file."""

    report: dict[str, Any]
    file: JobFile | None = None


@dataclass
class Progress:
    database: Database
    job_id: int
    principal: Principal
    _total: int | None = None
    _done: int = 0
    _written_at: float = field(default=0.0)

    def total(self, count: int) -> None:
        self._total = count
        self._write(force=True)

    def advance(self, count: int = 1) -> None:
        self._done += count
        self._write()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force:
            if now - self._written_at < WRITE_EVERY_SECONDS:
                return
            self._written_at = now
        with self.database.transaction() as session:
            session.execute(
                update(BackgroundJob)
                .where(BackgroundJob.id == self.job_id)
                .values(total=self._total, done=self._done, heartbeat_at=utcnow())
            )


Work = Callable[[Progress], Outcome]


def start(database: Database, principal: Principal, kind: str, title: str, work: Work) -> int:
    """Record the job and run ``work`` in a thread; returns the job's id at once."""
    assert principal.id is not None, "background work is started by a staff user"
    with database.transaction() as session:
        job = BackgroundJob(kind=kind, title=title, actor_id=principal.id, status="running")
        session.add(job)
        session.flush()
        job_id = int(job.id)
    thread = threading.Thread(
        target=_run, args=(database, job_id, principal, work), name=f"job-{job_id}", daemon=True
    )
    thread.start()
    return job_id


def start_after_commit(
    session: Session, database: Database, principal: Principal, kind: str, title: str, work: Work
) -> int:
    """As :func:`start`, recorded in the caller's transaction: the work starts once that
    commits (its own writes must not wait on the caller's), never if it rolls back."""
    assert principal.id is not None, "background work is started by a staff user"
    job = BackgroundJob(kind=kind, title=title, actor_id=principal.id, status="running")
    session.add(job)
    session.flush()
    job_id = int(job.id)
    pending: list[tuple[int, Principal, Work]] = session.info.setdefault(_PENDING, [])
    if not session.info.get(_LISTENING):
        # Left in place afterwards (removing a listener while it runs is not allowed);
        # with nothing pending they do nothing.
        event.listen(session, "after_commit", _start_pending)
        event.listen(session, "after_rollback", _forget_pending)
        session.info[_LISTENING] = True
    pending.append((job_id, principal, work))
    session.info[_DATABASE] = database
    return job_id


_PENDING = "jobs_to_start"
_DATABASE = "jobs_database"
_LISTENING = "jobs_listening"


def _start_pending(session: Session) -> None:
    database: Database | None = session.info.get(_DATABASE)
    if database is None:
        return
    for job_id, principal, work in session.info.pop(_PENDING, []):
        threading.Thread(
            target=_run, args=(database, job_id, principal, work), name=f"job-{job_id}", daemon=True
        ).start()


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def run_now(database: Database, principal: Principal, kind: str, title: str, work: Work) -> int:
    """As :func:`start`, but in this thread (command-line tools and tests)."""
    assert principal.id is not None
    with database.transaction() as session:
        job = BackgroundJob(kind=kind, title=title, actor_id=principal.id, status="running")
        session.add(job)
        session.flush()
        job_id = int(job.id)
    _run(database, job_id, principal, work)
    return job_id


def _run(database: Database, job_id: int, principal: Principal, work: Work) -> None:
    progress = Progress(database, job_id, principal)
    try:
        outcome = work(progress)
    except Problem as problem:
        _finish(database, job_id, "failed", {"error": problem.detail, "code": problem.code})
        return
    except Exception:
        log.exception("background job %s failed", job_id)
        _finish(database, job_id, "failed", {"error": "the work failed unexpectedly"})
        return
    _finish(database, job_id, "succeeded", outcome.report, outcome.file, progress)


def _finish(
    database: Database,
    job_id: int,
    status: str,
    report: dict[str, Any],
    file: JobFile | None = None,
    progress: Progress | None = None,
) -> None:
    with database.transaction() as session:
        job = session.get(BackgroundJob, job_id)
        if job is None:
            return
        job.status = status
        job.report = report
        job.finished_at = utcnow()
        job.heartbeat_at = job.finished_at
        if progress is not None:
            job.done = progress._done
            job.total = progress._total if progress._total is not None else progress._done
        if file is not None:
            job.file_name, job.file_type, job.file_content = (
                file.name,
                file.media_type,
                file.content,
            )


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    title: str
    status: str  # running | succeeded | failed | interrupted
    total: int | None
    done: int
    report: dict[str, Any] | None
    file_name: str | None
    has_file: bool

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, round(100 * self.done / self.total))


def _own(session: Session, principal: Principal, job_id: int) -> BackgroundJob:
    job = session.get(BackgroundJob, job_id)
    # Someone else's job is not found: its title and report may hold what they saw.
    if job is None or job.actor_id != principal.id:
        raise NotFound(f"job {job_id} not found", code="job-not-found")
    return job


def get(session: Session, principal: Principal, job_id: int) -> JobView:
    job = _own(session, principal, job_id)
    status = job.status
    if status == "running" and job.heartbeat_at < utcnow() - STALE_AFTER:
        status = "interrupted"
    return JobView(
        id=job.id,
        kind=job.kind,
        title=job.title,
        status=status,
        total=job.total,
        done=job.done,
        report=job.report,
        file_name=job.file_name,
        has_file=job.file_content is not None,
    )


def file_of(session: Session, principal: Principal, job_id: int) -> JobFile:
    job = _own(session, principal, job_id)
    if job.file_content is None or job.file_name is None:
        raise NotFound(f"job {job_id} has no file (or it expired)", code="job-file-not-found")
    return JobFile(job.file_name, job.file_type or "application/octet-stream", job.file_content)


def recent(session: Session, principal: Principal, limit: int = 20) -> list[JobView]:
    ids = session.scalars(
        select(BackgroundJob.id)
        .where(BackgroundJob.actor_id == principal.id)
        .order_by(BackgroundJob.id.desc())
        .limit(limit)
    ).all()
    return [get(session, principal, job_id) for job_id in ids]


def expire_files(session: Session) -> int:
    """Drop the files of work finished more than ``KEEP_FILES`` ago, and the rows a week
    later (periodic)."""
    cutoff = utcnow() - KEEP_FILES
    expired = session.scalars(
        select(BackgroundJob.id).where(
            BackgroundJob.finished_at < cutoff, BackgroundJob.file_content.is_not(None)
        )
    ).all()
    if expired:
        session.execute(
            update(BackgroundJob).where(BackgroundJob.id.in_(expired)).values(file_content=None)
        )
    session.execute(
        delete(BackgroundJob).where(BackgroundJob.finished_at < cutoff - timedelta(days=6))
    )
    return len(expired)
