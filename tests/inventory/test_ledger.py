"""The stock ledger's rules, exercised through the service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mercato.auth.principal import Principal
from mercato.db import Database, utcnow
from mercato.errors import Forbidden, Problem, ValidationProblem
from mercato.events import OutboxEvent
from mercato.inventory import service as inventory
from mercato.inventory.models import StockMovement
from tests.inventory.conftest import World, assert_ledger_consistent, level

SYSTEM = Principal.system("tests")
Stock = Callable[[int, int, int], None]


def ctx(**kwargs: object) -> inventory.Context:
    return inventory.Context(SYSTEM, **kwargs)  # type: ignore[arg-type]


def movements(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(StockMovement)) or 0)


def events(db: Database, type_: str) -> list[dict[str, object]]:
    with db.read() as session:
        return [
            e.data
            for e in session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.id)
            )
        ]


def test_receipt_and_availability(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 10)
    stock(v, world.store_a, 3)
    with db.transaction() as session:
        inventory.set_policy(
            session, SYSTEM, v, world.warehouse, safety_stock=2, low_stock_threshold=None
        )
    snap = level(db, v, world.warehouse)
    assert (snap.on_hand, snap.reserved, snap.safety_stock, snap.available) == (10, 0, 2, 8)
    with db.read() as session:
        assert inventory.availability(session, [v, world.variants[1]], world.locations) == {
            v: 11,
            world.variants[1]: 0,
        }
        by_location = inventory.availability_by_location(session, [v], world.locations)
    assert by_location == {v: {world.warehouse: 8, world.store_a: 3}}
    assert_ledger_consistent(db)


def test_hold_release_allocate_fulfil(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 5)
    with db.transaction() as session:
        held = inventory.hold(
            session,
            ctx(reference_type="cart", reference_id="c1"),
            [inventory.HoldLine(v, 2, world.warehouse)],
        )
    assert level(db, v, world.warehouse).reserved == 2
    assert level(db, v, world.warehouse).available == 3
    with db.transaction() as session:
        inventory.allocate(session, ctx(), [held[0].id], "order", "o1")
        reservation = inventory.get_reservation(session, held[0].id)
        assert reservation.status == "allocated" and reservation.expires_at is None
    with db.transaction() as session:
        inventory.fulfil(session, ctx(), held[0].id, 1)
    snap = level(db, v, world.warehouse)
    assert (snap.on_hand, snap.reserved) == (4, 1)
    with db.transaction() as session:
        inventory.release(session, ctx(), [held[0].id])
        inventory.release(session, ctx(), [held[0].id])  # twice is harmless
    snap = level(db, v, world.warehouse)
    assert (snap.on_hand, snap.reserved, snap.available) == (4, 0, 4)
    assert_ledger_consistent(db)


def test_lines_of_one_variant_are_summed_before_holding(
    db: Database, world: World, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 3)
    with pytest.raises(inventory.InsufficientStock), db.transaction() as session:
        inventory.hold(
            session,
            ctx(),
            [inventory.HoldLine(v, 2, world.warehouse), inventory.HoldLine(v, 2, world.warehouse)],
        )
    assert level(db, v, world.warehouse).reserved == 0


def test_hold_is_all_or_nothing(db: Database, world: World, stock: Stock) -> None:
    a, b = world.variants[:2]
    stock(a, world.warehouse, 5)
    stock(b, world.warehouse, 1)
    before = movements(db)
    with pytest.raises(inventory.InsufficientStock) as err, db.transaction() as session:
        inventory.hold(
            session,
            ctx(),
            [inventory.HoldLine(a, 2, world.warehouse), inventory.HoldLine(b, 2, world.warehouse)],
        )
    assert err.value.extra["variant_id"] == b and err.value.extra["available"] == 1
    assert level(db, a, world.warehouse).reserved == 0
    assert movements(db) == before


def test_channel_hold_sources_in_priority_order_and_splits(
    db: Database, world: World, stock: Stock
) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 2)
    stock(v, world.store_a, 2)
    stock(v, world.store_b, 5)
    with db.transaction() as session:
        one = inventory.hold(
            session, ctx(), [inventory.HoldLine(v, 1)], candidate_locations=world.locations
        )
        assert [(r.location_id, r.quantity) for r in one] == [(world.warehouse, 1)]
        # 4 units: no single location in priority order has them but store_b does.
        four = inventory.hold(
            session, ctx(), [inventory.HoldLine(v, 4)], candidate_locations=world.locations
        )
        assert [(r.location_id, r.quantity) for r in four] == [(world.store_b, 4)]
        split = inventory.hold(
            session, ctx(), [inventory.HoldLine(v, 3)], candidate_locations=world.locations
        )
        assert sorted((r.location_id, r.quantity) for r in split) == sorted(
            [(world.warehouse, 1), (world.store_a, 2)]
        )
    with pytest.raises(inventory.InsufficientStock), db.transaction() as session:
        inventory.hold(
            session,
            ctx(),
            [inventory.HoldLine(v, 2)],
            candidate_locations=world.locations,
            allow_split=False,
        )
    assert_ledger_consistent(db)


def test_expired_holds_are_released(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 1)
    with db.transaction() as session:
        held = inventory.hold(
            session, ctx(), [inventory.HoldLine(v, 1, world.warehouse)], ttl=timedelta(seconds=30)
        )
    with db.transaction() as session:
        assert inventory.expire_holds(session) == 0
        assert inventory.expire_holds(session, now=utcnow() + timedelta(seconds=31)) == 1
        assert inventory.get_reservation(session, held[0].id).status == "expired"
    assert level(db, v, world.warehouse).reserved == 0
    assert_ledger_consistent(db)


def test_a_stale_hold_does_not_block_a_new_buyer(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 1)
    with db.transaction() as session:
        inventory.hold(
            session, ctx(), [inventory.HoldLine(v, 1, world.warehouse)], ttl=timedelta(seconds=30)
        )
        inventory.Reservation  # noqa: B018
    with db.transaction() as session:
        session.execute(
            inventory.update(inventory.Reservation).values(expires_at=utcnow() - timedelta(1))
        )
    with db.transaction() as session:
        again = inventory.hold(session, ctx(), [inventory.HoldLine(v, 1, world.warehouse)])
    assert again[0].quantity == 1
    assert level(db, v, world.warehouse).reserved == 1
    assert_ledger_consistent(db)


def test_store_sale_cannot_take_reserved_units(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 2)
    with db.transaction() as session:
        inventory.hold(session, ctx(), [inventory.HoldLine(v, 2, world.store_a)])
    with pytest.raises(inventory.InsufficientStock), db.transaction() as session:
        inventory.adjust(
            session, ctx(), world.store_a, [inventory.AdjustmentLine(v, -1, inventory.Reason.SALE)]
        )
    assert level(db, v, world.store_a).on_hand == 2


@pytest.mark.parametrize("quantity", [0, -1, 10_000_000])
def test_bad_quantities_are_refused(
    db: Database, world: World, stock: Stock, quantity: int
) -> None:
    stock(world.variants[0], world.warehouse, 5)
    before = movements(db)
    with pytest.raises(ValidationProblem), db.transaction() as session:
        inventory.hold(
            session, ctx(), [inventory.HoldLine(world.variants[0], quantity, world.warehouse)]
        )
    assert movements(db) == before


def test_unknown_variant_or_location(db: Database, world: World) -> None:
    with pytest.raises(ValidationProblem) as err, db.transaction() as session:
        inventory.adjust(
            session,
            ctx(),
            world.warehouse,
            [inventory.AdjustmentLine(999_999, 1, inventory.Reason.RECEIPT)],
        )
    assert err.value.errors[0]["field"] == "body.lines[0].variant_id"
    with pytest.raises(ValidationProblem), db.transaction() as session:
        inventory.adjust(
            session,
            ctx(),
            999_999,
            [inventory.AdjustmentLine(world.variants[0], 1, inventory.Reason.RECEIPT)],
        )


def test_store_associate_moves_stock_only_at_their_store(db: Database, world: World) -> None:
    from mercato.auth.permissions import Role

    associate = Principal.staff(
        42, "a@example.com", Role.STORE_ASSOCIATE, frozenset({world.store_a})
    )
    line = [inventory.AdjustmentLine(world.variants[0], 1, inventory.Reason.RECEIPT)]
    with db.transaction() as session:
        inventory.adjust(session, inventory.Context(associate), world.store_a, line)
    with pytest.raises(Forbidden), db.transaction() as session:
        inventory.adjust(session, inventory.Context(associate), world.store_b, line)
    assert level(db, world.variants[0], world.store_b).on_hand == 0


def test_transfer_ship_and_receive_with_discrepancy(
    db: Database, world: World, stock: Stock
) -> None:
    a, b = world.variants[:2]
    stock(a, world.warehouse, 10)
    stock(b, world.warehouse, 4)
    with db.transaction() as session:
        transfer = inventory.create_transfer(
            session, ctx(), world.warehouse, world.store_a, [(a, 6), (b, 4)], ship_now=True
        )
        transfer_id = transfer.id
    assert level(db, a, world.warehouse).on_hand == 4
    assert level(db, a, world.store_a).incoming == 6
    with db.transaction() as session:
        done, discrepancies = inventory.receive_transfer(session, ctx(), transfer_id, {a: 6, b: 3})
        assert done.status == "received"
    assert discrepancies == [{"variant_id": b, "shipped": 4, "received": 3, "missing": 1}]
    snap = level(db, b, world.store_a)
    assert (snap.on_hand, snap.incoming) == (3, 0)
    with pytest.raises(Problem), db.transaction() as session:
        inventory.receive_transfer(session, ctx(), transfer_id, None)  # received once only
    assert_ledger_consistent(db)


def test_transfer_from_a_location_without_the_stock(
    db: Database, world: World, stock: Stock
) -> None:
    stock(world.variants[0], world.warehouse, 1)
    before = movements(db)
    with pytest.raises(inventory.InsufficientStock), db.transaction() as session:
        inventory.create_transfer(
            session, ctx(), world.warehouse, world.store_a, [(world.variants[0], 2)], ship_now=True
        )
    assert movements(db) == before
    assert level(db, world.variants[0], world.store_a).incoming == 0


def test_purchase_order_receipts(db: Database, world: World) -> None:
    v = world.variants[0]
    with db.transaction() as session:
        po = inventory.create_purchase_order(
            session, ctx(), "PO-1", "Roaster", world.warehouse, [(v, 10)], None
        )
        po_id = po.id
    assert level(db, v, world.warehouse).incoming == 10
    with db.transaction() as session:
        assert inventory.receive_purchase_order(session, ctx(), po_id, {v: 4}).status == (
            "partially_received"
        )
    with pytest.raises(ValidationProblem), db.transaction() as session:
        inventory.receive_purchase_order(session, ctx(), po_id, {v: 7})
    with db.transaction() as session:
        assert inventory.receive_purchase_order(session, ctx(), po_id, {v: 6}).status == "received"
    snap = level(db, v, world.warehouse)
    assert (snap.on_hand, snap.incoming) == (10, 0)
    assert_ledger_consistent(db)


def test_cycle_count_posts_differences(db: Database, world: World, stock: Stock) -> None:
    a, b = world.variants[:2]
    stock(a, world.store_a, 10)
    with db.transaction() as session:
        _, lines = inventory.post_count(session, ctx(), world.store_a, [(a, 8), (b, 2)])
    assert {(x.variant_id, x.expected, x.counted) for x in lines} == {(a, 10, 8), (b, 0, 2)}
    assert level(db, a, world.store_a).on_hand == 8
    assert level(db, b, world.store_a).on_hand == 2
    with db.read() as session:
        count_moves = session.execute(
            select(StockMovement.variant_id, StockMovement.on_hand_delta)
            .where(StockMovement.reason == "count")
            .order_by(StockMovement.variant_id)
        ).all()
    assert [tuple(m) for m in count_moves] == [(a, -2), (b, 2)]
    assert_ledger_consistent(db)


def test_count_below_reserved_is_refused(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 5)
    with db.transaction() as session:
        inventory.hold(session, ctx(), [inventory.HoldLine(v, 3, world.store_a)])
    with pytest.raises(Problem) as err, db.transaction() as session:
        inventory.post_count(session, ctx(), world.store_a, [(v, 2)])
    assert err.value.code == "count-below-reserved"
    assert level(db, v, world.store_a).on_hand == 5


def test_events_stock_changed_and_low(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.store_a, 5)
    with db.transaction() as session:
        inventory.set_policy(
            session, SYSTEM, v, world.store_a, safety_stock=None, low_stock_threshold=3
        )
    with db.transaction() as session:
        inventory.hold(session, ctx(), [inventory.HoldLine(v, 2, world.store_a)])
    assert events(db, "stock.low") == []
    with db.transaction() as session:
        inventory.hold(session, ctx(), [inventory.HoldLine(v, 1, world.store_a)])
    low = events(db, "stock.low")
    assert len(low) == 1 and low[0]["available"] == 2 and low[0]["threshold"] == 3
    changed = events(db, "stock.changed")
    assert changed[-1]["reserved"] == 3 and changed[-1]["reason"] == "reservation"


def test_verify_detects_a_tampered_row(db: Database, world: World, stock: Stock) -> None:
    v = world.variants[0]
    stock(v, world.warehouse, 5)
    with db.transaction() as session:
        session.execute(inventory.update(inventory.StockLevel).values(on_hand=6))
    with db.read() as session:
        rows, bad = inventory.verify(session)
    assert rows == 1 and len(bad) == 1 and bad[0].ledger_on_hand == 5
