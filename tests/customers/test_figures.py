"""Derived figures kept current from order events: lifetime value, counts, RFM."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercato.customers import figures
from mercato.customers.models import Customer, CustomerFigures
from mercato.db import Database, utcnow
from mercato.event_types import DomainEvent, typed
from mercato.events import Event
from mercato.money import quantize
from tests.customers.conftest import Shop, cancel_order, place_order, register
from tests.helpers import ok, outbox

_order_ids = itertools.count(1_000_000)


def _event(
    kind: str,
    customer_id: int,
    order_id: int,
    currency: str,
    total: Decimal | str,
    channel_id: int,
    at: datetime | None = None,
) -> DomainEvent:
    return typed(
        Event(
            id=str(uuid.uuid4()),
            type=f"order.{kind}",
            time=at or utcnow(),
            version=1,
            data={
                "order_id": order_id,
                "number": f"M{order_id}",
                "channel_id": channel_id,
                "customer_id": customer_id,
                "status": kind,
                "currency": currency,
                "grand_total": str(total),
                "source": "import",
            },
        )
    )


def _new_customer(db: Database) -> int:
    with db.transaction() as session:
        customer = Customer(groups=[], tags=[], created_at=utcnow())
        session.add(customer)
        session.flush()
        return customer.id


def _figures(db: Database, customer_id: int) -> figures.Figures:
    with db.read() as session:
        return figures.figures_of(session, customer_id)


def test_figures_follow_placed_and_cancelled_orders(shop: Shop) -> None:
    me = register(shop, "kai@example.com")["customer"]["id"]
    web, market = shop.web["id"], shop.marketplace["id"]
    place_order(shop.db, channel_id=web, customer_id=me, currency="EUR", amounts=["19.99"])
    place_order(shop.db, channel_id=web, customer_id=me, currency="EUR", amounts=["5.01", "5"])
    third = place_order(shop.db, channel_id=market, customer_id=me, currency="EUR", amounts=["100"])
    place_order(shop.db, channel_id=web, customer_id=me, currency="JPY", amounts=["1200"])
    place_order(shop.db, channel_id=web, customer_id=None, currency="EUR", amounts=["7"])
    shop.drain()
    found = _figures(shop.db, me)
    assert found.order_count == 4
    assert [
        (c.currency, c.order_count, c.lifetime_value, c.average_order_value)
        for c in found.by_currency
    ] == [
        ("EUR", 3, Decimal("130.00"), Decimal("43.33")),
        ("JPY", 1, Decimal("1200"), Decimal("1200")),
    ]
    assert found.favourite_channel_id == web
    assert found.first_purchase_at is not None and found.last_purchase_at is not None
    assert found.first_purchase_at <= found.last_purchase_at

    cancel_order(shop.db, third.id)
    shop.drain()
    shop.drain()  # nothing left: a second pass changes nothing
    found = _figures(shop.db, me)
    assert found.order_count == 3
    assert found.by_currency[0].lifetime_value == Decimal("30.00")

    profile = ok(shop.client.get(f"/v1/customers/{me}/profile", headers=shop.staff))
    assert profile["figures"]["lifetime_value"][0] == {
        "currency": "EUR",
        "order_count": 2,
        "lifetime_value": "30.00",
        "average_order_value": "15.00",
    }
    assert profile["figures"]["segment"] == "promising"  # recent, two orders


def test_redelivered_events_are_counted_once(shop: Shop) -> None:
    me = register(shop, "kai@example.com")["customer"]["id"]
    order = place_order(
        shop.db, channel_id=shop.web["id"], customer_id=me, currency="EUR", amounts=["10"]
    )
    shop.drain()
    placed = Event.from_row(outbox(shop.db, "order.placed")[0]).typed()
    with shop.db.transaction() as session:
        figures.on_order_placed(session, placed)  # the same event again
        # Another event about the same order (a replay with a new id) does not count either.
        figures.on_order_placed(
            session, _event("placed", me, order.id, "EUR", "10", shop.web["id"])
        )
    assert _figures(shop.db, me).order_count == 1
    cancel_order(shop.db, order.id)
    shop.drain()
    cancelled = Event.from_row(outbox(shop.db, "order.cancelled")[0]).typed()
    with shop.db.transaction() as session:
        figures.on_order_cancelled(session, cancelled)
        figures.on_order_cancelled(
            session, _event("cancelled", me, order.id, "EUR", "10", shop.web["id"])
        )
    found = _figures(shop.db, me)
    assert found.order_count == 0 and found.by_currency == []
    with shop.db.read() as session:
        row = session.get(CustomerFigures, (me, "EUR"))
        assert row is not None and (row.order_count, row.lifetime_value) == (0, Decimal(0))


def test_a_cancellation_seen_before_its_placement_keeps_the_order_uncounted(
    shop: Shop,
) -> None:
    me = _new_customer(shop.db)
    with shop.db.transaction() as session:
        figures.on_order_cancelled(session, _event("cancelled", me, 42, "EUR", "9", shop.web["id"]))
        figures.on_order_placed(session, _event("placed", me, 42, "EUR", "9", shop.web["id"]))
    assert _figures(shop.db, me).order_count == 0


@pytest.mark.slow
def test_concurrent_order_events_for_one_customer_all_count(shop: Shop, db: Database) -> None:
    me = _new_customer(db)
    amounts = [Decimal(f"{n}.{n:02d}") for n in range(1, 41)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(chunk: list[Decimal]) -> None:
        try:
            barrier.wait()
            for amount in chunk:
                with db.transaction() as session:
                    figures.on_order_placed(
                        session,
                        _event("placed", me, next(_order_ids), "EUR", amount, shop.web["id"]),
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(amounts[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    found = _figures(db, me).by_currency
    assert [(c.order_count, c.lifetime_value) for c in found] == [(40, sum(amounts))]


amount_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**9), st.booleans()), min_size=1, max_size=8
)


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=amount_lists, currency=st.sampled_from(["EUR", "JPY", "KWD", "VND"]))
def test_lifetime_value_is_the_exact_sum_of_live_orders(
    shop: Shop, items: list[tuple[int, bool]], currency: str
) -> None:
    me = _new_customer(shop.db)
    scale = Decimal(1).scaleb(-{"EUR": 2, "JPY": 0, "KWD": 3, "VND": 0}[currency])
    expected = Decimal(0)
    live = 0
    with shop.db.transaction() as session:
        for minor, cancelled in items:
            amount = quantize(minor * scale, currency)
            order_id = next(_order_ids)
            figures.on_order_placed(
                session, _event("placed", me, order_id, currency, amount, shop.web["id"])
            )
            if cancelled:
                figures.on_order_cancelled(
                    session, _event("cancelled", me, order_id, currency, amount, shop.web["id"])
                )
            else:
                expected += amount
                live += 1
    found = _figures(shop.db, me).by_currency
    if live:
        assert [(c.currency, c.order_count, c.lifetime_value) for c in found] == [
            (currency, live, expected)
        ]
        assert found[0].average_order_value == quantize(expected / live, currency)
    else:
        assert found == []


@pytest.mark.parametrize(
    ("days", "score"),
    [(0, 5), (30, 5), (31, 4), (90, 4), (91, 3), (180, 3), (181, 2), (365, 2), (366, 1)],
)
def test_recency_scores(days: int, score: int) -> None:
    assert figures.recency_score(days) == score


@pytest.mark.parametrize(
    ("orders", "score"), [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (9, 4), (10, 5), (50, 5)]
)
def test_frequency_scores(orders: int, score: int) -> None:
    assert figures.frequency_score(orders) == score


def test_monetary_scores_are_quintiles_of_the_mid_rank() -> None:
    assert [figures.monetary_score(lower, 1, 10) for lower in range(10)] == [
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    assert figures.monetary_score(0, 1, 1) == 3  # alone: the middle
    assert figures.monetary_score(0, 10, 10) == 3  # all equal: the middle


@given(lower=st.integers(0, 500), equal=st.integers(1, 50), above=st.integers(0, 500))
def test_monetary_score_is_bounded_and_grows_with_rank(lower: int, equal: int, above: int) -> None:
    total = lower + equal + above
    score = figures.monetary_score(lower, equal, total)
    assert 1 <= score <= 5
    assert figures.monetary_score(lower + 1, equal, total + 1) >= score


SEGMENTS = [
    ((5, 5, 5), "champions"),
    ((4, 4, 4), "champions"),
    ((4, 5, 3), "loyal"),
    ((3, 4, 1), "loyal"),
    ((5, 1, 1), "new"),
    ((5, 3, 5), "promising"),
    ((4, 1, 1), "promising"),
    ((3, 2, 5), "need_attention"),
    ((2, 3, 1), "at_risk"),
    ((1, 5, 5), "at_risk"),
    ((2, 1, 4), "at_risk"),
    ((2, 2, 2), "hibernating"),
    ((1, 2, 3), "lost"),
]


@pytest.mark.parametrize(("scores", "name"), SEGMENTS)
def test_segment_rules(scores: tuple[int, int, int], name: str) -> None:
    assert figures.segment(figures.Rfm(*scores)) == name


def test_every_score_combination_has_a_segment() -> None:
    names = {
        figures.segment(figures.Rfm(r, f, m))
        for r in range(1, 6)
        for f in range(1, 6)
        for m in range(1, 6)
    }
    assert names == {
        "champions",
        "loyal",
        "new",
        "promising",
        "need_attention",
        "at_risk",
        "hibernating",
        "lost",
    }
    assert figures.segment(None) == "prospect"


def test_rfm_segments_of_real_histories(shop: Shop) -> None:
    now = utcnow()
    web = shop.web["id"]
    histories: dict[str, list[tuple[int, str]]] = {
        # (days ago, amount)
        "champions": [(d, "200") for d in (1, 3, 5, 8, 12, 15, 20, 22, 25, 28)],
        "loyal": [(d, "20") for d in (40, 50, 60, 100, 120)],
        "new": [(2, "30")],
        "at_risk": [(200, "50"), (250, "60"), (300, "70")],
        "hibernating": [(200, "10")],
        "lost": [(400, "10"), (500, "5")],
    }
    ids: dict[str, int] = {}
    with shop.db.transaction() as session:
        for name, orders in histories.items():
            customer = Customer(groups=[], tags=[], created_at=now)
            session.add(customer)
            session.flush()
            ids[name] = customer.id
            for days, amount in orders:
                figures.on_order_placed(
                    session,
                    _event(
                        "placed",
                        customer.id,
                        next(_order_ids),
                        "EUR",
                        amount,
                        web,
                        at=now - timedelta(days=days),
                    ),
                )
    nobody = _new_customer(shop.db)
    for name, customer_id in ids.items():
        profile = ok(shop.client.get(f"/v1/customers/{customer_id}/profile", headers=shop.staff))
        assert profile["figures"]["segment"] == name, (name, profile["figures"])
    champion = ok(shop.client.get(f"/v1/customers/{ids['champions']}/profile", headers=shop.staff))[
        "figures"
    ]
    assert champion["rfm"] == {"recency": 5, "frequency": 5, "monetary": 5}
    assert champion["order_count"] == 10
    assert champion["last_purchase_at"] > champion["first_purchase_at"]
    empty = ok(shop.client.get(f"/v1/customers/{nobody}/profile", headers=shop.staff))
    assert empty["figures"] == {
        "order_count": 0,
        "lifetime_value": [],
        "first_purchase_at": None,
        "last_purchase_at": None,
        "favourite_channel_id": None,
        "favourite_store_id": None,
        "rfm": None,
        "segment": "prospect",
    }


def test_favourite_store_is_the_pos_store(shop: Shop) -> None:
    from tests.helpers import LOCATION, created, make_channel

    store = created(
        shop.client.post(
            "/v1/locations", headers=shop.staff, json={**LOCATION, "code": "ST-1", "type": "store"}
        )
    )
    pos = make_channel(
        shop.client,
        shop.staff,
        "pos-1",
        type="pos",
        currencies=["EUR"],
        locations=[{"location_id": store["id"], "priority": 0}],
    )
    me = _new_customer(shop.db)
    for _ in range(2):
        place_order(shop.db, channel_id=pos["id"], customer_id=me, currency="EUR", amounts=["3"])
    place_order(shop.db, channel_id=shop.web["id"], customer_id=me, currency="EUR", amounts=["3"])
    shop.drain()
    found = _figures(shop.db, me)
    assert (found.favourite_channel_id, found.favourite_store_id) == (pos["id"], store["id"])
