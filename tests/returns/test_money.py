"""Where the money of a return goes: split tenders, store credit, exchanges with a price
difference either way, restocking fees, and refunds the payments cannot cover."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from mercato.inventory.models import Reservation
from mercato.returns.models import ReturnSettlement
from tests.commerce.conftest import DemoWorld
from tests.commerce.helpers import card_token, ok
from tests.conftest import assert_problem
from tests.returns.conftest import (
    events,
    fulfil,
    level,
    line,
    payments_of,
    place,
    product,
    receive,
    refund,
    staff_login,
    start_return,
)

pytestmark = pytest.mark.slow


def _gift_card(world: DemoWorld, amount: str) -> dict[str, Any]:
    return ok(
        world.client.post(
            "/v1/gift-cards", headers=world.staff(), json={"currency": "JPY", "amount": amount}
        ),
        201,
    )


def _settlements(world: DemoWorld, return_id: int) -> list[tuple[str, list[int]]]:
    with world.database.read() as session:
        rows = session.scalars(
            select(ReturnSettlement).where(ReturnSettlement.return_id == return_id)
        )
        return [(r.status, list(r.refund_ids)) for r in rows]


def _received(world: DemoWorld, order: Any, lines: list[dict[str, Any]], **extra: Any) -> Any:
    staff = world.staff()
    ret = start_return(world, staff, order, lines, **extra)
    return ok(receive(world, staff, ret, "WH-TYO"))


def test_a_split_tender_is_refunded_money_first(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "4800"}}, {"WH-TYO": 5})
    card = _gift_card(demo_world, "10000")
    order = place(demo_world, [(item["ONE"], 2)], gift_card=(card["code"], "8000"))
    fulfil(demo_world, order)
    gift, by_card = payments_of(demo_world, order.number)
    assert (gift["method"], by_card["method"]) == ("gift_card", "test_gateway")
    card_paid = Decimal(by_card["captured"])
    ret = _received(demo_world, order, [line(order, item["ONE"], 2, "changed_mind")])
    assert ret["refund_total"] == "9600"
    done = ok(refund(demo_world, staff_login(demo_world), ret))
    assert done["status"] == "refunded"
    gift, by_card = payments_of(demo_world, order.number)
    # The card (money) is refunded in full first, the gift card gets the rest.
    assert Decimal(by_card["refunded"]) == card_paid
    assert Decimal(gift["refunded"]) == Decimal(9600) - card_paid
    balance = ok(
        demo_world.client.get(f"/v1/gift-cards/{card['id']}", headers=staff_login(demo_world))
    )
    assert Decimal(balance["balance"]) == Decimal(10000) - 8000 + (Decimal(9600) - card_paid)
    [(status, refund_ids)] = _settlements(demo_world, ret["id"])
    assert status == "succeeded" and len(refund_ids) == 2


def test_store_credit_when_the_customer_chooses_it(demo_world: DemoWorld) -> None:
    item = product(demo_world, {"ONE": {"JPY": "3000"}}, {"WH-TYO": 5})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order)
    customer_id = order.body["customer_id"]
    ret = _received(
        demo_world,
        order,
        [line(order, item["ONE"], 1, "changed_mind")],
        refund_method="store_credit",
    )
    done = ok(refund(demo_world, staff_login(demo_world), ret))
    assert (done["status"], done["refund_method"]) == ("refunded", "store_credit")
    credit = ok(
        demo_world.client.get(f"/v1/store-credit/{customer_id}", headers=staff_login(demo_world))
    )
    assert [(a["currency"], a["balance"]) for a in credit["accounts"]] == [("JPY", "3000")]
    assert payments_of(demo_world, order.number)[0]["refunded"] == "0"
    [event] = events(demo_world, "return.refunded", ret["id"])
    assert event["refund_method"] == "store_credit" and event["lines"][0]["amount"] == "3000"


def test_a_refund_larger_than_captured_is_refused_and_changes_nothing(
    demo_world: DemoWorld,
) -> None:
    item = product(demo_world, {"ONE": {"JPY": "2500"}}, {"WH-TYO": 5})
    order = place(demo_world, [(item["ONE"], 1)])
    fulfil(demo_world, order, capture=False)  # authorised, not captured yet
    ret = _received(demo_world, order, [line(order, item["ONE"], 1, "changed_mind")])
    problem = assert_problem(
        refund(demo_world, staff_login(demo_world), ret), 422, "refund-exceeds-captured"
    )
    assert problem["refundable"] == "0"
    after = ok(demo_world.client.get(f"/v1/returns/{ret['id']}", headers=staff_login(demo_world)))
    assert (after["status"], after["settlement"], after["settlements"]) == ("inspected", "none", [])
    assert payments_of(demo_world, order.number)[0]["refunded"] == "0"
    # Once captured, the same return refunds normally.
    fulfil_capture = payments_of(demo_world, order.number)[0]
    ok(
        demo_world.client.post(
            f"/v1/payments/{fulfil_capture['id']}/capture", headers=staff_login(demo_world), json={}
        )
    )
    assert ok(refund(demo_world, staff_login(demo_world), ret))["status"] == "refunded"


def test_restocking_fee_only_for_the_customers_own_reasons(demo_world: DemoWorld) -> None:
    staff = staff_login(demo_world)
    ok(
        demo_world.client.post(
            "/v1/return-policies",
            headers=staff,
            json={"days_allowed": 30, "restocking_fee_percent": "15"},
        ),
        201,
    )
    a = product(demo_world, {"ONE": {"JPY": "3333"}}, {"WH-TYO": 5})
    b = product(demo_world, {"ONE": {"JPY": "2000"}}, {"WH-TYO": 5})
    order = place(demo_world, [(a["ONE"], 1), (b["ONE"], 1)])
    fulfil(demo_world, order)
    ret = _received(
        demo_world,
        order,
        [
            line(order, a["ONE"], 1, "changed_mind"),
            line(order, b["ONE"], 1, "wrong_item"),
        ],
    )
    fees = [(x["paid"], x["restocking_fee"], x["amount"]) for x in ret["lines"]]
    assert fees == [("3333", "500", "2833"), ("2000", "0", "2000")]  # 15% of 3333 = 499.95
    assert ret["refund_total"] == "4833"
    # Not every unit came back for the merchant's fault: no shipping refund.
    assert ret["shipping_refund"] == "0"
    done = ok(refund(demo_world, staff, ret))
    assert payments_of(demo_world, order.number)[0]["refunded"] == done["refunded_total"] == "4833"


def test_exchange_for_a_dearer_size_charges_the_difference(demo_world: DemoWorld) -> None:
    client, staff, key = demo_world.client, staff_login(demo_world), demo_world.key("web-jp")
    sizes = product(demo_world, {"M": {"JPY": "4000"}, "L": {"JPY": "5000"}}, {"WH-TYO": 4})
    order = place(demo_world, [(sizes["M"], 1)])
    fulfil(demo_world, order)
    ret = _received(
        demo_world, order, [line(order, sizes["M"], 1, "size_fit", exchange_variant_id=sizes["L"])]
    )
    available = level(demo_world, sizes["L"], "WH-TYO").available
    problem = assert_problem(refund(demo_world, staff, ret), 422)
    assert problem["errors"][0]["field"] == "body.payments"
    wrong = {"method": "test_gateway", "amount": "900", "token": card_token(client, key)}
    assert_problem(refund(demo_world, staff, ret, payments=[wrong]), 422, "payment-amount-mismatch")
    assert level(demo_world, sizes["L"], "WH-TYO").available == available  # nothing held
    declined = {
        "method": "test_gateway",
        "amount": "1000",
        "token": card_token(client, key, "declined"),
    }
    assert_problem(refund(demo_world, staff, ret, payments=[declined]), 402, "payment-declined")
    after = ok(client.get(f"/v1/returns/{ret['id']}", headers=staff))
    assert (after["status"], after["settlement"], after["exchange_order_id"]) == (
        "inspected",
        "failed",
        None,
    )
    assert level(demo_world, sizes["L"], "WH-TYO").available == available  # holds released

    good = {"method": "test_gateway", "amount": "1000", "token": card_token(client, key)}
    done = ok(refund(demo_world, staff, ret, payments=[good]))
    assert (done["status"], done["exchange_charge"], done["refunded_total"]) == (
        "closed",
        "1000",
        "0",
    )
    replacement = ok(client.get(f"/v1/orders/{done['exchange_order_id']}", headers=staff))
    assert (replacement["source"], replacement["status"]) == ("exchange", "confirmed")
    assert replacement["grand_total"] == "1000" and replacement["shipping_total"] == "0"
    [new_line] = replacement["lines"]
    assert (new_line["variant_id"], new_line["unit_price"], new_line["discount"]) == (
        sizes["L"],
        "5000",
        "4000",
    )
    assert replacement["customer_id"] == order.body["customer_id"]
    [charge] = payments_of(demo_world, replacement["number"])
    assert (charge["amount"], charge["status"]) == ("1000", "authorized")
    assert level(demo_world, sizes["L"], "WH-TYO").available == available - 1
    with demo_world.database.read() as session:
        held = session.execute(
            select(Reservation.variant_id, Reservation.status).where(
                Reservation.reference_id == replacement["number"]
            )
        ).all()
    assert [tuple(r) for r in held] == [(sizes["L"], "allocated")]
    # Nothing was refunded: the original card keeps its money, no points to reverse.
    assert payments_of(demo_world, order.number)[0]["refunded"] == "0"
    assert events(demo_world, "return.refunded", ret["id"]) == []


def test_exchange_for_a_cheaper_size_refunds_the_difference(demo_world: DemoWorld) -> None:
    client, staff = demo_world.client, staff_login(demo_world)
    sizes = product(demo_world, {"M": {"JPY": "4000"}, "L": {"JPY": "5000"}}, {"WH-TYO": 4})
    order = place(demo_world, [(sizes["L"], 1)])
    fulfil(demo_world, order)
    ret = _received(
        demo_world, order, [line(order, sizes["L"], 1, "size_fit", exchange_variant_id=sizes["M"])]
    )
    wrong = {"method": "test_gateway", "amount": "1", "token": "tok_x"}
    assert_problem(refund(demo_world, staff, ret, payments=[wrong]), 422)
    done = ok(refund(demo_world, staff, ret))
    assert (done["status"], done["refunded_total"], done["exchange_charge"]) == (
        "refunded",
        "1000",
        "0",
    )
    assert done["lines"][0]["refund"] == "1000"
    replacement = ok(client.get(f"/v1/orders/{done['exchange_order_id']}", headers=staff))
    assert (replacement["status"], replacement["grand_total"]) == ("confirmed", "0")
    assert payments_of(demo_world, replacement["number"]) == []
    assert payments_of(demo_world, order.number)[0]["refunded"] == "1000"
    [event] = events(demo_world, "return.refunded", ret["id"])
    assert [(x["variant_id"], x["amount"]) for x in event["lines"]] == [(sizes["L"], "1000")]
    assert event["exchange_order_id"] == replacement["id"]


def test_an_exchange_can_be_refunded_instead(demo_world: DemoWorld) -> None:
    staff = staff_login(demo_world, "support")
    fee = {"days_allowed": 30, "restocking_fee_percent": "20"}
    ok(
        demo_world.client.post("/v1/return-policies", headers=staff_login(demo_world), json=fee),
        201,
    )
    sizes = product(demo_world, {"M": {"JPY": "4000"}, "L": {"JPY": "5000"}}, {"WH-TYO": 4})
    order = place(demo_world, [(sizes["M"], 1)])
    fulfil(demo_world, order)
    ret = start_return(
        demo_world,
        staff,
        order,
        [line(order, sizes["M"], 1, "size_fit", exchange_variant_id=sizes["L"])],
    )
    received = ok(receive(demo_world, staff, ret, "WH-TYO"))
    assert received["lines"][0]["restocking_fee"] == "0"  # no fee on an exchange
    done = ok(refund(demo_world, staff, ret, exchange=False))
    assert (done["status"], done["refunded_total"], done["exchange_order_id"]) == (
        "refunded",
        "4000",
        None,
    )
