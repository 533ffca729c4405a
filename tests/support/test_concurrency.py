"""Many agents and the customer acting on one case at once: every change applies once, in
order, against the others' result (threads, each in its own transaction)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import Problem
from mercato.support import service
from mercato.support.models import SupportMessage
from tests.support.conftest import Shop, support_events

pytestmark = pytest.mark.slow

THREADS = 12
AGENT = Principal.system("agent")


def _new_case(db: Database, customer_id: int, status: service.CaseStatus | None = None) -> int:
    with db.transaction() as session:
        case = service.open_case(
            session,
            AGENT,
            service.CaseDraft(
                subject="Race", source=service.ContactChannel.PHONE, customer_id=customer_id
            ),
        )
        if status is not None:
            service.transition(session, AGENT, case.id, status)
        return case.id


def _race(work: list[Callable[[], Any]]) -> list[str]:
    """Run every call at once; 'ok' or the problem code of each."""
    start = threading.Barrier(len(work))

    def run(call: Callable[[], Any]) -> str:
        start.wait()
        try:
            call()
        except Problem as problem:
            return problem.code
        return "ok"

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


def _in_transaction(db: Database, fn: Callable[[Any], Any]) -> Callable[[], Any]:
    def call() -> Any:
        with db.transaction() as session:
            return fn(session)

    return call


def test_a_case_is_rated_once_however_many_try(shop: Shop) -> None:
    customer_id, _ = shop.customer()
    case_id = _new_case(shop.db, customer_id, service.CaseStatus.CLOSED)

    def rater(score: int) -> Callable[[], Any]:
        return _in_transaction(shop.db, lambda s: service.rate(s, customer_id, case_id, score))

    results = _race([rater(1 + n % 5) for n in range(THREADS)])
    assert results.count("ok") == 1
    assert set(results) == {"ok", "case-already-rated"}
    [rated] = support_events(shop.db, "support.case_rated")
    with shop.db.read() as session:
        assert service.get_case(session, case_id).satisfaction == rated.data["satisfaction"]


def test_agents_closing_one_case_at_once_close_it_once(shop: Shop) -> None:
    customer_id, _ = shop.customer()
    case_id = _new_case(shop.db, customer_id, service.CaseStatus.RESOLVED)
    results = _race(
        [
            _in_transaction(
                shop.db, lambda s: service.transition(s, AGENT, case_id, service.CaseStatus.CLOSED)
            )
            for _ in range(THREADS)
        ]
    )
    assert results.count("ok") == 1
    assert set(results) == {"ok", "invalid-case-transition"}
    closes = [
        e
        for e in support_events(shop.db, "support.case_status_changed")
        if e.data["case_id"] == case_id and e.data["to_status"] == "closed"
    ]
    assert len(closes) == 1


def test_customer_replies_racing_a_close_never_land_after_it(shop: Shop) -> None:
    """Her messages reopen the resolved case; an agent closes it. Each message either
    arrived before the close (and is kept) or is refused: none is written to a closed case."""
    customer_id, _ = shop.customer()
    case_id = _new_case(shop.db, customer_id, service.CaseStatus.RESOLVED)
    her = service.customer_actor(customer_id, shop.channel_id)
    draft = service.MessageDraft(
        "Still broken", service.Direction.INBOUND, service.ContactChannel.APP
    )
    replies = [
        _in_transaction(shop.db, lambda s: service.add_message(s, her, case_id, draft))
        for _ in range(THREADS - 2)
    ]
    closes = [
        _in_transaction(
            shop.db, lambda s: service.transition(s, AGENT, case_id, service.CaseStatus.CLOSED)
        )
        for _ in range(2)
    ]
    results = _race(replies + closes)
    sent, closed = results[: len(replies)], results[len(replies) :]
    assert closed.count("ok") == 1 and set(sent) <= {"ok", "case-closed"}
    with shop.db.read() as session:
        case = service.get_case(session, case_id)
        stored = session.scalar(
            select(func.count())
            .select_from(SupportMessage)
            .where(SupportMessage.case_id == case_id)
        )
        assert case.status == "closed"
        assert stored == sent.count("ok")
        # Every message that got in came before the close, on the case's own clock.
        assert case.closed_at is not None
        assert case.last_message_at is None or case.last_message_at <= case.closed_at
    changes = [
        (e.data["from_status"], e.data["to_status"])
        for e in support_events(shop.db, "support.case_status_changed")
        if e.data["case_id"] == case_id
    ]
    assert changes[-1][1] == "closed" and changes.count(("resolved", "open")) <= 1
