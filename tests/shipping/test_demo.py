"""The demo configuration: every market can ship at home and abroad, with duties."""

from __future__ import annotations

from decimal import Decimal

from mercato.db import Database
from mercato.shipping import service
from mercato.shipping.carriers import Destination
from mercato.shipping.demo import seed_demo_shipping
from mercato.shipping.models import ShippingCarrier
from tests.helpers import count
from tests.shipping.conftest import ACTOR, FRIDAY

D = Decimal


def _quote(
    db: Database, origin: str, destination: Destination, weight: int, value: str, currency: str
) -> dict[str, Decimal]:
    with db.read() as session:
        options = service.quote(
            session,
            origin_country=origin,
            destination=destination,
            total_weight_g=weight,
            order_value=D(value),
            currency=currency,
            at=FRIDAY,
        )
    return {f"{o.carrier_code}/{o.service_code}": o.amount for o in options}


def test_demo_shipping(db: Database) -> None:
    with db.transaction() as session:
        seed_demo_shipping(session, ACTOR)
    with db.transaction() as session:
        seed_demo_shipping(session, ACTOR)  # a second run changes nothing
    assert count(db, ShippingCarrier) == 7
    tokyo = _quote(db, "JP", Destination("JP", "13", "100-0001"), 1500, "3000", "JPY")
    assert tokyo == {"jp-parcel/standard": D("800"), "jp-parcel/express": D("1200")}
    naha = _quote(db, "JP", Destination("JP", "47", "900-0001"), 1500, "3000", "JPY")
    assert naha["jp-parcel/standard"] == D("1400")
    assert _quote(db, "JP", Destination("JP"), 1500, "6000", "JPY")["jp-parcel/standard"] == 0
    berlin = _quote(db, "DE", Destination("DE", None, "10115"), 800, "30", "EUR")
    assert berlin == {"eu-parcel/standard": D("4.49"), "eu-parcel/express": D("9.90")}
    sylt = _quote(db, "DE", Destination("DE", None, "25980"), 800, "60", "EUR")
    assert sylt["eu-parcel/standard"] == D("3.50")  # free over 50, island surcharge stays
    paris = _quote(db, "DE", Destination("FR", None, "75001"), 800, "30", "EUR")
    assert paris["eu-parcel/europe"] == D("9.49")
    assert {"intl-economy/economy", "intl-express/express"} <= set(paris)
    assert _quote(db, "SG", Destination("SG"), 800, "30", "SGD")["sg-courier/standard"] == D("4.50")
    hanoi = _quote(db, "VN", Destination("VN", "HN"), 800, "100000", "VND")
    assert hanoi["vn-delivery/standard"] == D("22000")
    assert _quote(db, "VN", Destination("VN", "VN-44"), 800, "100000", "VND")[
        "vn-delivery/standard"
    ] == D("30000")
    anchorage = _quote(db, "US", Destination("US", "AK", "99501"), 800, "30", "USD")
    assert anchorage["us-parcel/ground"] == D("14.99")
    tokyo_to_texas = _quote(db, "JP", Destination("US", "TX", "78701"), 800, "100", "USD")
    assert set(tokyo_to_texas) == {"intl-economy/economy", "intl-express/express"}
    assert tokyo_to_texas["intl-economy/economy"] == D("21.60")  # 18 USD x 1.2 (zone)
    in_yen = _quote(db, "JP", Destination("US"), 800, "10000", "JPY")
    assert in_yen["intl-economy/economy"] == D("3240")  # 18 x 1.2 x 150
    assert _quote(db, "JP", Destination("BR"), 800, "100", "USD") == {}
    with db.read() as session:
        apparel = service.estimate_duties(session, "US", "JP", [("6109", "JP", D("900"), "USD")])
        small = service.estimate_duties(session, "DE", "JP", [("6912", "US", D("100"), "JPY")])
        coffee = service.estimate_duties(
            session, "DE", "US", [("0901", "US", D("200"), "EUR")], D("20")
        )
    assert apparel.duty == D("144.00") and apparel.import_tax == D("0.00")  # 16% of 900
    assert small.de_minimis_applied and small.duty == D("0")  # 100 JPY, well under 150 EUR
    assert small.import_tax == D("19")  # import VAT from the first cent: 100 x 19%
    assert coffee.duty == D("6.60") and coffee.import_tax == D("43.05")  # 220 x 3%; 226.6 x 19%
