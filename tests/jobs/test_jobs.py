"""Long work: progress any process can read, the report, the file (its owner's only), a
failure's reason, work whose process died, and files that expire."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.errors import ValidationProblem
from mercato.jobs import service as jobs
from mercato.jobs.models import BackgroundJob
from tests.conftest import OWNER_EMAIL, PASSWORD


def _staff(db: Database, email: str = OWNER_EMAIL) -> Principal:
    with db.transaction() as session:
        user = auth_service.bootstrap_owner(session, email, "Owner", PASSWORD)
        return Principal.staff(user.id, user.email, Role.OWNER, frozenset())


def test_progress_is_visible_while_the_work_runs_then_the_report(db: Database) -> None:
    owner = _staff(db)
    release = threading.Event()

    def work(progress: jobs.Progress) -> jobs.Outcome:
        progress.total(3)
        progress.advance()
        release.wait(10)
        progress.advance(2)
        return jobs.Outcome({"imported": 3, "lines": [{"line": 1, "result": "ok"}]})

    job_id = jobs.start(db, owner, "test.import", "Import three", work)
    deadline = time.monotonic() + 10
    while True:
        with db.read() as session:
            view = jobs.get(session, owner, job_id)
        if view.done == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (view.status, view.total, view.done, view.percent) == ("running", 3, 1, 33)
    release.set()
    while not view.finished and time.monotonic() < deadline:
        time.sleep(0.05)
        with db.read() as session:
            view = jobs.get(session, owner, job_id)
    assert view.status == "succeeded"
    assert (view.done, view.total) == (3, 3)
    assert view.report == {"imported": 3, "lines": [{"line": 1, "result": "ok"}]}


def test_a_refusal_ends_the_work_with_its_reason(db: Database) -> None:
    owner = _staff(db)

    def work(progress: jobs.Progress) -> jobs.Outcome:
        raise ValidationProblem.field("file", "has no header line")

    job_id = jobs.run_now(db, owner, "test.import", "Broken", work)
    with db.read() as session:
        view = jobs.get(session, owner, job_id)
    assert view.status == "failed"
    assert view.report is not None and "no header line" in view.report["error"]


def test_only_the_user_who_started_it_sees_it_and_its_file(
    db: Database, client: TestClient
) -> None:
    owner = _staff(db)
    with db.transaction() as session:
        other_user = auth_service.create_user(
            session,
            Principal.system(),
            email="other@example.com",
            name="Other",
            password=PASSWORD,
            role=Role.ADMIN,
            location_ids=[],
        )
        other = Principal.staff(other_user.id, other_user.email, Role.ADMIN, frozenset())

    def work(progress: jobs.Progress) -> jobs.Outcome:
        return jobs.Outcome({"rows": 1}, jobs.JobFile("export.csv", "text/csv", "sku\nA-1\n"))

    job_id = jobs.run_now(db, owner, "test.export", "Export", work)
    with db.read() as session:
        assert jobs.file_of(session, owner, job_id).content == "sku\nA-1\n"
        try:
            jobs.get(session, other, job_id)
        except Exception as exc:
            assert getattr(exc, "status", None) == 404
        else:
            raise AssertionError("another user saw the job")

    _sign_in(client, OWNER_EMAIL)
    page = client.get(f"/admin/jobs/{job_id}")
    assert page.status_code == 200 and "export.csv" in page.text
    download = client.get(f"/admin/jobs/{job_id}/download")
    assert download.status_code == 200
    assert download.text == "sku\nA-1\n"
    assert download.headers["content-disposition"] == 'attachment; filename="export.csv"'
    assert download.headers["cache-control"] == "no-store"
    client.cookies.clear()
    _sign_in(client, "other@example.com")
    assert client.get(f"/admin/jobs/{job_id}/download").status_code == 404
    assert client.get(f"/admin/jobs/{job_id}").status_code == 404


def test_work_whose_process_died_is_reported_interrupted(db: Database) -> None:
    owner = _staff(db)
    with db.transaction() as session:
        job = BackgroundJob(kind="test", title="Lost", actor_id=owner.id, status="running")
        session.add(job)
        session.flush()
        job_id = job.id
        job.heartbeat_at = utcnow() - jobs.STALE_AFTER - timedelta(seconds=1)
    with db.read() as session:
        assert jobs.get(session, owner, job_id).status == "interrupted"


def test_files_expire_a_day_after_the_work_ended(db: Database) -> None:
    owner = _staff(db)

    def work(progress: jobs.Progress) -> jobs.Outcome:
        return jobs.Outcome({}, jobs.JobFile("a.json", "application/json", "{}"))

    old = jobs.run_now(db, owner, "test", "Old", work)
    new = jobs.run_now(db, owner, "test", "New", work)
    with db.transaction() as session:
        session.execute(
            update(BackgroundJob)
            .where(BackgroundJob.id == old)
            .values(finished_at=utcnow() - timedelta(days=1, minutes=1))
        )
    with db.transaction() as session:
        assert jobs.expire_files(session) == 1
    with db.read() as session:
        assert not jobs.get(session, owner, old).has_file
        assert jobs.get(session, owner, new).has_file


def _sign_in(client: TestClient, email: str) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def test_work_recorded_in_a_transaction_starts_on_commit_and_never_on_rollback(
    db: Database,
) -> None:
    owner = _staff(db)
    ran: list[str] = []

    def work(progress: jobs.Progress) -> jobs.Outcome:
        ran.append("ran")
        return jobs.Outcome({"done": True})

    try:
        with db.transaction() as session:
            lost = jobs.start_after_commit(session, db, owner, "test", "Rolled back", work)
            raise RuntimeError("the request failed")
    except RuntimeError:
        pass
    with db.transaction() as session:
        kept = jobs.start_after_commit(session, db, owner, "test", "Committed", work)
        time.sleep(0.2)
        assert ran == []  # not before the commit
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.read() as session:
            if jobs.get(session, owner, kept).finished:
                break
        time.sleep(0.05)
    assert ran == ["ran"]
    with db.read() as session:
        assert jobs.get(session, owner, kept).status == "succeeded"
        # Only the committed job exists (SQLite may give it the rolled back one's id).
        assert [(j.id, j.title) for j in jobs.recent(session, owner)] == [(kept, "Committed")]
    assert lost in (kept, kept - 1)
