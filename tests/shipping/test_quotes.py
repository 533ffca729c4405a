"""Quotes through the service: zones, brackets, free shipping, minor units, re-validation."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from mercato.db import Database
from mercato.errors import ValidationProblem
from mercato.shipping import service
from mercato.shipping.carriers import Destination
from mercato.shipping.schemas import BracketIn, RateTableIn, ServicePatch
from tests.shipping.conftest import (
    ACTOR,
    FRIDAY,
    World,
    make_carrier,
    make_service,
    make_table,
    make_zone,
    prices,
    quote,
)

HAMBURG = Destination("DE", "HH", "20095")
BERLIN = Destination("DE", "BE", "10115")
MUNICH = Destination("DE", "BY", "80331")
SYLT = Destination("DE", "SH", "25980")


def test_most_specific_zone_wins(db: Database, world: World) -> None:
    assert prices(quote(db, HAMBURG))["parcel-de/standard"] == Decimal("4.00")  # country
    assert prices(quote(db, MUNICH))["parcel-de/standard"] == Decimal("3.50")  # region
    assert prices(quote(db, BERLIN))["parcel-de/standard"] == Decimal("3.00")  # postal prefix
    # A postal prefix beats a region: a Berlin postal code with the region set to Bavaria.
    odd = Destination("DE", "BY", "10115")
    assert prices(quote(db, odd))["parcel-de/standard"] == Decimal("3.00")
    # Regions match as ISO 3166-2 codes, with or without the country.
    assert prices(quote(db, Destination("DE", "de-by", None)))["parcel-de/standard"] == Decimal(
        "3.50"
    )
    # Express has only a country table: every German address gets it.
    assert {prices(quote(db, d))["parcel-de/express"] for d in (HAMBURG, BERLIN, MUNICH)} == {
        Decimal("9.00")
    }
    # The Berlin table stops at 5 kg without a per-kg price: no fallback to the country.
    assert "parcel-de/standard" not in prices(quote(db, BERLIN, weight=6000))
    assert prices(quote(db, HAMBURG, weight=6000))["parcel-de/standard"] == Decimal("8.10")
    # A longer postal prefix beats a shorter one; postal codes compare without spaces or "-".
    with db.transaction() as session:
        mitte = make_zone(session, "mitte", ("DE", None, "101"))
        make_table(session, world.standard, mitte, "EUR", [(5000, "2.00")])
    for postal, price in (("10115", "2.00"), ("10245", "3.00"), ("10-115", "2.00")):
        found = prices(quote(db, Destination("DE", None, postal)))["parcel-de/standard"]
        assert found == Decimal(price), postal


WEIGHT_PRICES = [
    (1, "4.00"),
    (1000, "4.00"),  # brackets include their upper bound
    (1001, "5.00"),
    (2000, "5.00"),
    (5000, "7.00"),
    (5001, "8.10"),  # every started kg above the last bracket: 7.00 + 1.10
    (6000, "8.10"),
    (6001, "9.20"),
    (30000, "34.50"),  # 7.00 + 25 x 1.10
]


def test_weight_brackets_and_per_kg(db: Database, world: World) -> None:
    for weight, price in WEIGHT_PRICES:
        found = prices(quote(db, HAMBURG, weight=weight))["parcel-de/standard"]
        assert found == Decimal(price), (weight, found)


def test_parcels_are_priced_one_by_one(db: Database, world: World) -> None:
    # 1 kg (4.00) + 2 kg (5.00) + 5.5 kg (8.10), not one 8.5 kg parcel (11.30).
    options = quote(db, HAMBURG, parcels=[1000, 2000, 5500])
    assert prices(options)["parcel-de/standard"] == Decimal("17.10")
    # Express has no per-kg price: a parcel above 5 kg removes the option.
    assert "parcel-de/express" not in prices(options)


def test_free_shipping_threshold_and_remote_surcharge(db: Database, world: World) -> None:
    below = quote(db, HAMBURG, value="49.99")
    assert prices(below)["parcel-de/standard"] == Decimal("4.00")
    at_threshold = {o.service_code: o for o in quote(db, HAMBURG, value="50.00")}
    assert at_threshold["standard"].amount == Decimal("0.00")
    assert at_threshold["standard"].free_shipping is True
    assert at_threshold["express"].amount == Decimal("9.00")  # no threshold on express
    # The island surcharge is per parcel and stays when the base price is waived.
    assert prices(quote(db, SYLT, value="20"))["parcel-de/standard"] == Decimal("6.50")
    assert prices(quote(db, SYLT, value="60", parcels=[500, 500]))["parcel-de/standard"] == (
        Decimal("5.00")
    )
    island = next(o for o in quote(db, SYLT) if o.service_code == "standard")
    assert island.remote_surcharge == Decimal("2.50")


def test_options_sorted_by_price_with_delivery_dates(db: Database, world: World) -> None:
    options = quote(db, HAMBURG)
    assert [o.amount for o in options] == sorted(o.amount for o in options)
    standard, express = options
    assert (standard.service_code, express.service_code) == ("standard", "express")
    assert standard.carrier_name == "Parcel-De" and standard.level == "standard"
    # Handed over on Friday 6 March: 1 to 3 business days is Monday 9 to Wednesday 11.
    assert (standard.earliest_delivery, standard.latest_delivery) == (
        date(2026, 3, 9),
        date(2026, 3, 11),
    )
    assert express.earliest_delivery == express.latest_delivery == date(2026, 3, 9)
    # On Saturday nothing moves until Monday: 1 to 3 days is Tuesday to Thursday.
    saturday = quote(db, HAMBURG, at=FRIDAY + timedelta(days=1))[0]
    assert (saturday.earliest_delivery, saturday.latest_delivery) == (
        date(2026, 3, 10),
        date(2026, 3, 12),
    )
    # Days count in the carrier's time zone: 23:30 UTC on Friday is Saturday in Berlin.
    late = datetime(2026, 3, 6, 23, 30, tzinfo=FRIDAY.tzinfo)
    assert quote(db, HAMBURG, at=late)[0].earliest_delivery == date(2026, 3, 10)


def test_business_days() -> None:
    friday = date(2026, 3, 6)
    assert service.add_business_days(friday, 0) == friday
    assert service.add_business_days(friday, 1) == date(2026, 3, 9)
    assert service.add_business_days(friday, 5) == date(2026, 3, 13)
    assert service.add_business_days(date(2026, 3, 7), 0) == date(2026, 3, 9)  # Saturday


def test_yen_and_dong_have_no_minor_unit(db: Database) -> None:
    with db.transaction() as session:
        jp = make_carrier(session, "parcel-jp", "PJ", ["JP"], ["JP"])
        vn = make_carrier(session, "parcel-vn", "PV", ["VN"], ["VN"])
        jp_zone = make_zone(session, "jp", ("JP", None, None))
        vn_zone = make_zone(session, "vn", ("VN", None, None))
        make_table(
            session,
            make_service(session, jp, "standard"),
            jp_zone,
            "JPY",
            [(2000, "800"), (5000, "1100")],
            per_extra_kg=Decimal("120"),
            free_over=Decimal("5000"),
        )
        make_table(
            session,
            make_service(session, vn, "standard"),
            vn_zone,
            "VND",
            [(1000, "22000"), (3000, "30000")],
            per_extra_kg=Decimal("5000"),
        )
    (yen,) = quote(
        db,
        Destination("JP", None, "100-0001"),
        origin="JP",
        weight=6500,
        value="4999",
        currency="JPY",
    )
    assert yen.amount == Decimal("1340") and yen.amount.as_tuple().exponent == 0
    (dong,) = quote(
        db, Destination("VN", "HN", None), origin="VN", weight=3001, value="100000", currency="VND"
    )
    assert dong.amount == Decimal("35000") and str(dong.amount) == "35000"
    for currency, value in (("JPY", "4999.5"), ("VND", "100000.01")):
        with pytest.raises(ValidationProblem) as bad:
            quote(db, Destination("JP"), origin="JP", value=value, currency=currency)
        assert bad.value.errors[0]["field"] == "body.order_value"
    # A price with decimals is refused for yen, naming the bracket.
    with db.transaction() as session, pytest.raises(ValidationProblem) as refused:
        make_table(session, 1, jp_zone, "JPY", [(100, "99.5")])
    assert refused.value.errors[0]["field"] == "body.brackets[0].price"


def test_unserved_destination_is_an_empty_list(db: Database, world: World) -> None:
    assert quote(db, Destination("BR")) == []  # the carrier does not ship there
    assert quote(db, Destination("US", "CA", "94105")) == []  # ships there, no zone covers it
    assert quote(db, Destination("DE"), origin="JP") == []  # does not ship from there
    # Only rate tables in the quote's currency apply: there is no conversion.
    assert quote(db, HAMBURG, value="20", currency="USD") == []


def test_which_services_are_offered(db: Database, world: World) -> None:
    # An international service is not offered from Germany to Germany.
    with db.transaction() as session:
        make_table(
            session,
            make_service(session, world.carrier, "abroad", scope="international"),
            world.zones["de"],
            "EUR",
            [(5000, "1.00")],
        )
    assert [o.service_code for o in quote(db, HAMBURG)] == ["standard", "express"]
    # Inactive services and carriers are not offered.
    with db.transaction() as session:
        service.update_service(session, ACTOR, world.express, ServicePatch(active=False))
    assert [o.service_code for o in quote(db, HAMBURG)] == ["standard"]
    with db.transaction() as session:
        carrier = service.get_carrier(session, world.carrier)
        carrier.active = False
    assert quote(db, HAMBURG) == []


def test_quotes_are_deterministic_and_options_revalidate(db: Database, world: World) -> None:
    first = quote(db, HAMBURG)
    assert quote(db, HAMBURG) == first
    chosen = first[0]
    assert chosen.option_id.startswith("parcel-de:standard:")
    inputs: dict[str, Any] = {
        "origin_country": "DE",
        "destination": HAMBURG,
        "total_weight_g": 800,
        "order_value": Decimal("20.00"),
        "currency": "EUR",
        "at": FRIDAY,
    }
    with db.read() as session:
        assert service.get_option(session, chosen.option_id, **inputs) == chosen
        # A day later the dates move but the offer stands.
        later = service.get_option(
            session, chosen.option_id, **{**inputs, "at": FRIDAY + timedelta(days=3)}
        )
        assert later is not None and later.amount == chosen.amount
        # Heavier parcel: another price, so the stored option is no longer valid.
        assert (
            service.get_option(session, chosen.option_id, **{**inputs, "total_weight_g": 1500})
            is None
        )
        assert service.get_option(session, "parcel-de:standard:000000000000", **inputs) is None
    # Staff change the price: the option the cart stored no longer validates.
    with db.transaction() as session:
        service.replace_rate_table(
            session,
            ACTOR,
            world.tables["de"],
            RateTableIn(
                service_id=world.standard,
                zone_id=world.zones["de"],
                currency="EUR",
                brackets=[BracketIn(up_to_g=1000, price=Decimal("4.20"))],
            ),
        )
    with db.read() as session:
        assert service.get_option(session, chosen.option_id, **inputs) is None
    assert prices(quote(db, HAMBURG))["parcel-de/standard"] == Decimal("4.20")


BAD_QUOTES: list[tuple[dict[str, Any], str]] = [
    ({"origin_country": "XX"}, "body.origin_country"),
    ({"destination": Destination("ZZ")}, "body.destination.country"),
    ({"currency": "EURO"}, "body.currency"),
    ({"order_value": Decimal("-1")}, "body.order_value"),
    ({"order_value": Decimal("1.001")}, "body.order_value"),
    ({"order_value": Decimal("NaN")}, "body.order_value"),
    ({"total_weight_g": 0}, "body.total_weight_g"),
    ({"total_weight_g": None, "parcels": [100, -5]}, "body.parcels[1]"),
    ({"parcels": [100]}, "body.parcels"),  # both given
    ({"at": datetime(2026, 3, 6, 9, 0)}, "body.at"),  # naive
]


def test_bad_quote_inputs_name_the_field(db: Database, world: World) -> None:
    for kwargs, field in BAD_QUOTES:
        inputs: dict[str, Any] = {
            "origin_country": "DE",
            "destination": HAMBURG,
            "total_weight_g": 800,
            "order_value": Decimal("20"),
            "currency": "EUR",
            "at": FRIDAY,
            **kwargs,
        }
        with db.read() as session, pytest.raises(ValidationProblem) as bad:
            service.quote(session, **inputs)
        assert bad.value.errors[0]["field"] == field, kwargs


def test_a_quote_runs_the_same_few_queries_for_any_number_of_carriers(
    db: Database, world: World
) -> None:
    def statements() -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert quote(db, HAMBURG)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(seen)

    one_carrier = statements()
    with db.transaction() as session:
        for n in range(6):
            carrier = make_carrier(session, f"extra-{n}", "X" + "ABCDEF"[n], ["DE"], ["DE"])
            zone = make_zone(session, f"extra-{n}", ("DE", None, f"2{n}"))
            for code in ("a", "b"):
                make_table(
                    session,
                    make_service(session, carrier, code),
                    zone,
                    "EUR",
                    [(1000, "1.00"), (2000, "2.00")],
                )
    assert len(quote(db, HAMBURG)) == 2 + 2  # two extra carriers cover 20095
    assert statements() == one_carrier <= 6
