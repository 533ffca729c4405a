"""Average satisfaction by period, sales channel and contact channel (for analytics)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.errors import ValidationProblem
from mercato.support import service
from tests.conftest import assert_problem
from tests.helpers import ok
from tests.support.conftest import Shop

pytestmark = pytest.mark.slow

AGENT = Principal.system("agent")
C = service.ContactChannel


def _rated_case(
    db: Database,
    customer_id: int,
    source: service.ContactChannel,
    channel_id: int | None,
    score: int,
    at: datetime,
) -> None:
    with db.transaction() as session:
        case = service.open_case(
            session,
            AGENT,
            service.CaseDraft(
                subject="Rated", source=source, customer_id=customer_id, channel_id=channel_id
            ),
            now=at - timedelta(hours=2),
        )
        service.transition(
            session, AGENT, case.id, service.CaseStatus.CLOSED, now=at - timedelta(hours=1)
        )
        service.rate(session, customer_id, case.id, score, now=at)


def test_average_satisfaction_by_period_and_channel(shop: Shop) -> None:
    customer_id, _ = shop.customer()
    app = shop.channel_id
    # Rows: period, sales channel (none first), contact channel.
    # (contact channel, sales channel, score, when): Sunday 2030-01-06 to Friday 2030-02-01.
    ratings = [
        (C.APP, app, 5, datetime(2030, 1, 6, 23, 59, tzinfo=UTC)),
        (C.APP, app, 2, datetime(2030, 1, 7, 0, 1, tzinfo=UTC)),
        (C.APP, app, 4, datetime(2030, 1, 7, 18, 0, tzinfo=UTC)),
        (C.PHONE, None, 3, datetime(2030, 1, 7, 12, 0, tzinfo=UTC)),
        (C.PHONE, None, 4, datetime(2030, 1, 13, 12, 0, tzinfo=UTC)),
        (C.APP, app, 1, datetime(2030, 2, 1, 8, 0, tzinfo=UTC)),
    ]
    for source, channel, score, at in ratings:
        _rated_case(shop.db, customer_id, source, channel, score, at)
    # An open, unrated case counts nowhere.
    with shop.db.transaction() as session:
        service.open_case(
            session,
            AGENT,
            service.CaseDraft(
                subject="Open", source=C.APP, customer_id=customer_id, channel_id=app
            ),
        )

    def rows(period: service.Period, since: datetime, until: datetime) -> list[tuple[object, ...]]:
        with shop.db.read() as session:
            found = service.average_satisfaction(session, since=since, until=until, period=period)
        return [(r.period_start, r.channel_id, r.source, r.ratings, r.average) for r in found]

    january = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))
    assert rows(service.Period.DAY, *january) == [
        (date(2030, 1, 6), app, "app", 1, Decimal("5.00")),
        (date(2030, 1, 7), None, "phone", 1, Decimal("3.00")),
        (date(2030, 1, 7), app, "app", 2, Decimal("3.00")),
        (date(2030, 1, 13), None, "phone", 1, Decimal("4.00")),
    ]
    # ISO weeks start on Monday: Sunday the 6th belongs to the week of 31 December.
    assert rows(service.Period.WEEK, *january) == [
        (date(2029, 12, 31), app, "app", 1, Decimal("5.00")),
        (date(2030, 1, 7), None, "phone", 2, Decimal("3.50")),
        (date(2030, 1, 7), app, "app", 2, Decimal("3.00")),
    ]
    everything = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 3, 1, tzinfo=UTC))
    assert rows(service.Period.MONTH, *everything) == [
        (date(2030, 1, 1), None, "phone", 2, Decimal("3.50")),
        (date(2030, 1, 1), app, "app", 3, Decimal("3.67")),
        (date(2030, 2, 1), app, "app", 1, Decimal("1.00")),
    ]
    assert (
        rows(service.Period.DAY, datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC))
        == []
    )


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=6),
)
def test_rows_merge_exactly_into_larger_groups(scores: list[int], groups: int) -> None:
    """Rows carry counts and totals, so a month or a whole channel is their exact merge."""
    parts: dict[int, list[int]] = defaultdict(list)
    for i, score in enumerate(scores):
        parts[i % groups].append(score)
    rows = [
        service.SatisfactionRow(date(2030, 1, 1), k, "app", len(v), sum(v))
        for k, v in parts.items()
    ]
    merged = service.SatisfactionRow(
        date(2030, 1, 1),
        None,
        "app",
        sum(r.ratings for r in rows),
        sum(r.score_total for r in rows),
    )
    expected = (Decimal(sum(scores)) / len(scores)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    assert merged.average == expected
    assert all(Decimal(1) <= r.average <= Decimal(5) for r in rows)


@pytest.mark.parametrize("score", [0, 6])
def test_a_rating_outside_one_to_five_is_refused(shop: Shop, score: int) -> None:
    customer_id, _ = shop.customer()
    with pytest.raises(ValidationProblem) as refused, shop.db.transaction() as session:
        service.rate(session, customer_id, 1, score)
    assert refused.value.errors[0]["field"] == "body.satisfaction"


def test_the_satisfaction_kpi_over_the_api(
    shop: Shop, make_staff: Callable[..., dict[str, str]]
) -> None:
    customer_id, _ = shop.customer()
    app = shop.channel_id
    for source, channel, score, at in (
        (C.APP, app, 5, datetime(2031, 3, 2, 10, 0, tzinfo=UTC)),
        (C.APP, app, 2, datetime(2031, 3, 2, 11, 0, tzinfo=UTC)),
        (C.PHONE, None, 3, datetime(2031, 3, 3, 9, 0, tzinfo=UTC)),
        (C.APP, app, 1, datetime(2031, 4, 1, 0, 0, tzinfo=UTC)),  # after the range
    ):
        _rated_case(shop.db, customer_id, source, channel, score, at)
    analyst = make_staff("analyst")
    url = "/v1/support/satisfaction"
    march = {"since": "2031-03-01T00:00:00Z", "until": "2031-04-01T00:00:00Z"}

    found = ok(shop.client.get(url, headers=analyst, params=march))
    assert (found["ratings"], found["average"]) == (3, "3.33")
    assert [
        (r["period_start"], r["channel_id"], r["source"], r["ratings"], r["average"])
        for r in found["rows"]
    ] == [
        ("2031-03-02", app, "app", 2, "3.50"),
        ("2031-03-03", None, "phone", 1, "3.00"),
    ]
    only_app = ok(shop.client.get(url, headers=analyst, params={**march, "channel_id": app}))
    assert [r["source"] for r in only_app["rows"]] == ["app"]
    by_phone = ok(
        shop.client.get(
            url, headers=analyst, params={**march, "source": "phone", "period": "month"}
        )
    )
    assert [(r["period_start"], r["ratings"]) for r in by_phone["rows"]] == [("2031-03-01", 1)]
    nothing = ok(shop.client.get(url, headers=analyst, params={**march, "channel_id": 999999}))
    assert (nothing["ratings"], nothing["average"], nothing["rows"]) == (0, None, [])

    # A reversed or naive range is a 422 naming the field; agents without analytics:read
    # (a support agent) are refused.
    backwards = {"since": march["until"], "until": march["since"]}
    problem = assert_problem(shop.client.get(url, headers=analyst, params=backwards), 422)
    assert problem["errors"][0]["field"] == "query.until"
    naive = {**march, "since": "2031-03-01T00:00:00"}
    problem = assert_problem(shop.client.get(url, headers=analyst, params=naive), 422)
    assert problem["errors"][0]["field"] == "query.since"
    assert_problem(shop.client.get(url, headers=make_staff("support_agent"), params=march), 403)
