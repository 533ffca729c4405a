"""The demo business loaded by ``mercato demo`` and ``mercato seed``.

A coffee, tea and apparel brand selling in Japan, Germany, Singapore, Vietnam and the
US through web stores, an app, store POS, a marketplace and a call centre.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato import events
from mercato.auth import service as auth_service
from mercato.auth.models import StaffUser
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.catalog import importexport
from mercato.catalog import service as catalog_service
from mercato.catalog.schemas import CategoryIn
from mercato.channels import service as channels_service
from mercato.channels.models import Channel
from mercato.channels.schemas import ChannelIn, ChannelLocationIn, ChannelType, ImportDuties
from mercato.db import Database
from mercato.demo_catalog import LOCALES, as_import_records, build_catalog
from mercato.inventory import service as inventory
from mercato.locations import service as locations_service
from mercato.locations.models import Location
from mercato.locations.schemas import Address, Capabilities, LocationIn, LocationType
from mercato.loyalty import service as loyalty
from mercato.loyalty.schemas import CurrencyRuleIn, ProgrammeIn, TierIn
from mercato.money import RoundingRule
from mercato.pricing import service as pricing
from mercato.shipping.demo import seed_demo_shipping

OWNER_EMAIL = "owner@mercato.example"

STORE_HOURS = {day: [["10:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")} | {
    "sun": [["11:00", "18:00"]]
}

# code, name, type, city, country, tz, lat, lng, capabilities, daily capacity
LOCATIONS: list[
    tuple[str, str, LocationType, str, str, str, float, float, dict[str, bool], int]
] = [
    (
        "WH-TYO",
        "Tokyo fulfilment centre",
        LocationType.WAREHOUSE,
        "Koto, Tokyo",
        "JP",
        "Asia/Tokyo",
        35.6495,
        139.8167,
        {"ship": True, "returns": True},
        5000,
    ),
    (
        "WH-FRA",
        "Frankfurt fulfilment centre",
        LocationType.WAREHOUSE,
        "Frankfurt am Main",
        "DE",
        "Europe/Berlin",
        50.0379,
        8.5622,
        {"ship": True, "returns": True},
        8000,
    ),
    (
        "WH-SIN",
        "Singapore hub",
        LocationType.WAREHOUSE,
        "Tuas",
        "SG",
        "Asia/Singapore",
        1.3294,
        103.6406,
        {"ship": True, "returns": True},
        3000,
    ),
    (
        "WH-NJ",
        "New Jersey warehouse",
        LocationType.WAREHOUSE,
        "Newark",
        "US",
        "America/New_York",
        40.7357,
        -74.1724,
        {"ship": True, "returns": True},
        6000,
    ),
    (
        "ST-SHIBUYA",
        "Shibuya store",
        LocationType.STORE,
        "Shibuya, Tokyo",
        "JP",
        "Asia/Tokyo",
        35.6595,
        139.7005,
        {"pickup": True, "ship_from_store": True, "returns": True},
        150,
    ),
    (
        "ST-OSAKA",
        "Osaka Umeda store",
        LocationType.STORE,
        "Osaka",
        "JP",
        "Asia/Tokyo",
        34.7025,
        135.4959,
        {"pickup": True, "ship_from_store": True, "returns": True},
        120,
    ),
    (
        "ST-BERLIN",
        "Berlin Mitte store",
        LocationType.STORE,
        "Berlin",
        "DE",
        "Europe/Berlin",
        52.5270,
        13.4020,
        {"pickup": True, "ship_from_store": True, "returns": True},
        150,
    ),
    (
        "ST-MUNICH",
        "Munich Marienplatz store",
        LocationType.STORE,
        "München",
        "DE",
        "Europe/Berlin",
        48.1374,
        11.5755,
        {"pickup": True, "ship_from_store": True, "returns": True},
        120,
    ),
    (
        "ST-HAMBURG",
        "Hamburg store",
        LocationType.STORE,
        "Hamburg",
        "DE",
        "Europe/Berlin",
        53.5511,
        9.9937,
        {"pickup": True, "returns": True},
        100,
    ),
    (
        "ST-ORCHARD",
        "Orchard Road store",
        LocationType.STORE,
        "Singapore",
        "SG",
        "Asia/Singapore",
        1.3048,
        103.8318,
        {"pickup": True, "ship_from_store": True, "returns": True},
        150,
    ),
    (
        "ST-HANOI",
        "Hanoi Old Quarter store",
        LocationType.STORE,
        "Hà Nội",
        "VN",
        "Asia/Ho_Chi_Minh",
        21.0340,
        105.8500,
        {"pickup": True, "ship_from_store": True, "returns": True},
        100,
    ),
    (
        "ST-SAIGON",
        "Saigon District 1 store",
        LocationType.STORE,
        "Hồ Chí Minh",
        "VN",
        "Asia/Ho_Chi_Minh",
        10.7769,
        106.7009,
        {"pickup": True, "ship_from_store": True, "returns": True},
        100,
    ),
    (
        "ST-NYC",
        "New York SoHo store",
        LocationType.STORE,
        "New York",
        "US",
        "America/New_York",
        40.7233,
        -74.0030,
        {"pickup": True, "returns": True},
        120,
    ),
    (
        "DS-DALAT",
        "Da Lat roastery (dropship)",
        LocationType.DROPSHIP,
        "Đà Lạt",
        "VN",
        "Asia/Ho_Chi_Minh",
        11.9404,
        108.4583,
        {"ship": True},
        400,
    ),
]


@dataclass
class DemoCredentials:
    staff_email: str
    staff_password: str
    channel_keys: dict[str, str] = field(default_factory=dict)
    other_staff: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "staff_email": self.staff_email,
            "staff_password": self.staff_password,
            "channel_keys": self.channel_keys,
            "other_staff": self.other_staff,
            "sign_ins": self.sign_ins(),
        }

    def sign_ins(self) -> list[dict[str, Any]]:
        """One staff sign-in per role, owner first, to try what each role may do."""
        places = {f"{prefix}@mercato.example": codes for prefix, _, codes in STAFF}
        staff = [(self.staff_email, Role.OWNER.value), *self.other_staff.items()]
        order = list(Role)
        return [
            {
                "role": role,
                "email": email,
                "password": self.staff_password,
                "locations": places.get(email, []),
            }
            for email, role in sorted(staff, key=lambda member: order.index(Role(member[1])))
        ]


def _locations(session: Session, actor: Principal) -> dict[str, int]:
    ids: dict[str, int] = {}
    for code, name, kind, city, country, tz, lat, lng, caps, capacity in LOCATIONS:
        location = locations_service.create_location(
            session,
            actor,
            LocationIn(
                code=code,
                name=name,
                type=kind,
                address=Address(city=city, country=country),
                timezone=tz,
                latitude=lat,
                longitude=lng,
                opening_hours=STORE_HOURS if kind is LocationType.STORE else {},
                capabilities=Capabilities(**caps),
                daily_capacity=capacity,
            ),
        )
        ids[code] = location.id
    return ids


# code, name, type, default locale, other locales, currencies, price list, country,
# ship-to countries, location codes (sell-from, in priority order)
CHANNELS: list[
    tuple[str, str, ChannelType, str, list[str], list[str], str, str | None, list[str], list[str]]
] = [
    (
        "web-jp",
        "Web store Japan",
        ChannelType.WEB,
        "ja-JP",
        ["en"],
        ["JPY"],
        "JP",
        "JP",
        ["JP"],
        ["WH-TYO", "ST-SHIBUYA", "ST-OSAKA"],
    ),
    (
        "web-de",
        "Web store Germany",
        ChannelType.WEB,
        "de-DE",
        ["en"],
        ["EUR"],
        "EU",
        "DE",
        ["DE", "AT", "FR", "NL"],
        ["WH-FRA", "ST-BERLIN", "ST-MUNICH", "ST-HAMBURG"],
    ),
    (
        "web-sg",
        "Web store Singapore",
        ChannelType.WEB,
        "en-SG",
        ["en"],
        ["SGD"],
        "SG",
        "SG",
        ["SG"],
        ["WH-SIN", "ST-ORCHARD"],
    ),
    (
        "web-vn",
        "Web store Vietnam",
        ChannelType.WEB,
        "vi-VN",
        ["en"],
        ["VND"],
        "VN",
        "VN",
        ["VN"],
        ["ST-HANOI", "ST-SAIGON", "DS-DALAT"],
    ),
    (
        "web-us",
        "Web store United States",
        ChannelType.WEB,
        "en-US",
        [],
        ["USD"],
        "US",
        "US",
        ["US"],
        ["WH-NJ", "ST-NYC"],
    ),
    (
        "app",
        "Mercato app",
        ChannelType.APP,
        "en",
        ["ja", "de", "vi", "en-SG"],
        ["USD", "JPY", "EUR", "SGD", "VND"],
        "GLOBAL",
        None,
        ["JP", "DE", "SG", "VN", "US"],
        [code for code, *_ in LOCATIONS],
    ),
    (
        "pos-shibuya",
        "Shibuya store POS",
        ChannelType.POS,
        "ja-JP",
        ["en"],
        ["JPY"],
        "JP",
        "JP",
        ["JP"],
        ["ST-SHIBUYA", "WH-TYO"],
    ),
    (
        "pos-berlin",
        "Berlin store POS",
        ChannelType.POS,
        "de-DE",
        ["en"],
        ["EUR"],
        "EU",
        "DE",
        ["DE"],
        ["ST-BERLIN", "WH-FRA"],
    ),
    (
        "marketplace-jp",
        "Marketplace Japan",
        ChannelType.MARKETPLACE,
        "ja-JP",
        [],
        ["JPY"],
        "JP",
        "JP",
        ["JP"],
        ["WH-TYO"],
    ),
    (
        "call-centre",
        "Call centre",
        ChannelType.CALL_CENTRE,
        "en",
        ["ja", "de", "vi"],
        ["USD", "JPY", "EUR", "SGD", "VND"],
        "GLOBAL",
        None,
        ["JP", "DE", "SG", "VN", "US"],
        [code for code, *_ in LOCATIONS],
    ),
]

# Channels whose shoppers pay import duty and tax at checkout (the others: on delivery).
DUTIES_PAID = {"app"}

# The global channels quote each market's shoppers in its currency.
MARKET_CURRENCIES = {"JP": "JPY", "DE": "EUR", "SG": "SGD", "VN": "VND", "US": "USD"}
COUNTRY_CURRENCIES = {"app": MARKET_CURRENCIES, "call-centre": MARKET_CURRENCIES}

# email prefix, role, location codes: with the owner, one sign-in for every role.
STAFF: list[tuple[str, Role, list[str]]] = [
    ("admin", Role.ADMIN, []),
    ("berlin.manager", Role.STORE_MANAGER, ["ST-BERLIN"]),
    ("shibuya.associate", Role.STORE_ASSOCIATE, ["ST-SHIBUYA"]),
    ("support", Role.SUPPORT_AGENT, []),
    ("analyst", Role.ANALYST, []),
    ("integration", Role.INTEGRATION, []),
]


class DemoAlreadyLoaded(Exception):
    """The database already holds the demo business."""


class DemoNotLoaded(Exception):
    """The database does not hold (all of) the demo business."""


def _categories(session: Session, actor: Principal) -> None:
    categories, _ = build_catalog()
    for category in categories:
        parent = (
            catalog_service.category_by_code(session, category.parent) if category.parent else None
        )
        catalog_service.create_category(
            session,
            actor,
            CategoryIn(
                code=category.code,
                name=category.name.en,
                parent_id=parent.id if parent else None,
                translations={loc: category.name.get(loc) for loc in LOCALES},
            ),
        )


def _products(session: Session, actor: Principal) -> int:
    _, products = build_catalog()
    report = importexport.run_import(
        session, actor, json.dumps(as_import_records(products)), "json", dry_run=False
    )
    if report.errors:
        raise RuntimeError(f"demo catalog does not import: {report.errors[:3]}")
    return report.products


def _channels(session: Session, actor: Principal, location_ids: dict[str, int]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for (
        code,
        name,
        kind,
        locale,
        locales,
        currencies,
        price_list,
        country,
        ship_to,
        sells_from,
    ) in CHANNELS:
        channel = channels_service.create_channel(
            session,
            actor,
            ChannelIn(
                code=code,
                name=name,
                type=kind,
                default_locale=locale,
                locales=locales,
                currencies=currencies,
                price_list=price_list,
                country=country,
                country_currencies=COUNTRY_CURRENCIES.get(code, {}),
                ship_to_countries=ship_to,
                locations=[
                    ChannelLocationIn(location_id=location_ids[loc], priority=i)
                    for i, loc in enumerate(sells_from)
                ],
                import_duties=ImportDuties.DDP if code in DUTIES_PAID else ImportDuties.DAP,
            ),
        )
        _, secret = channels_service.issue_key(session, actor, channel.id, f"{code} demo key")
        keys[code] = secret
    return keys


def _staff(
    session: Session, actor: Principal, location_ids: dict[str, int], password: str
) -> dict[str, str]:
    emails: dict[str, str] = {}
    for prefix, role, locations in STAFF:
        email = f"{prefix}@mercato.example"
        auth_service.create_user(
            session,
            actor,
            email=email,
            name=prefix.replace(".", " ").title(),
            password=password,
            role=role,
            location_ids=[location_ids[c] for c in locations],
        )
        emails[email] = role.value
    return emails


def _stock(session: Session, actor: Principal, location_ids: dict[str, int]) -> None:
    """Warehouses stock most of the range; stores a random part of it; a few items run low."""
    rng = random.Random(7)
    variant_ids = catalog_service.all_variant_ids(session)
    ctx = inventory.Context(actor, reference_type="demo", note="opening stock")
    for code, _name, kind, *_rest in LOCATIONS:
        if kind is LocationType.WAREHOUSE:
            lines = [(v, rng.randint(20, 300)) for v in variant_ids if rng.random() < 0.9]
        elif kind is LocationType.STORE:
            lines = [(v, rng.randint(1, 15)) for v in variant_ids if rng.random() < 0.35]
        else:
            lines = [(v, rng.randint(50, 500)) for v in variant_ids[:60]]
        inventory.receive_bulk(session, ctx, location_ids[code], lines)


# code, name, base currency, tax inclusive, (currency, factor from EUR, rounding) explicit prices
PRICE_LISTS: list[tuple[str, str, str, bool, list[tuple[str, Decimal, RoundingRule]]]] = [
    ("EU", "Europe", "EUR", True, [("EUR", Decimal(1), RoundingRule(Decimal("0.01")))]),
    ("JP", "Japan", "JPY", True, [("JPY", Decimal(160), RoundingRule(Decimal(10)))]),
    (
        "SG",
        "Singapore",
        "SGD",
        True,
        [("SGD", Decimal("1.45"), RoundingRule(Decimal("0.1"), ending=Decimal("0.90")))],
    ),
    ("VN", "Vietnam", "VND", True, [("VND", Decimal(27000), RoundingRule(Decimal(1000)))]),
    (
        "US",
        "United States (before sales tax)",
        "USD",
        False,
        [("USD", Decimal("1.08"), RoundingRule(Decimal("0.01"), ending=Decimal("0.99")))],
    ),
    # The app and the call centre: explicit euro prices, other currencies converted.
    (
        "GLOBAL",
        "Global (app, call centre)",
        "EUR",
        True,
        [("EUR", Decimal(1), RoundingRule(Decimal("0.01")))],
    ),
]
RATES = {
    "JPY": Decimal("162.40"),
    "USD": Decimal("1.0790"),
    "SGD": Decimal("1.4480"),
    "VND": Decimal("27450"),
}
ROUNDING = {
    "JPY": RoundingRule(Decimal(10)),
    "VND": RoundingRule(Decimal(1000)),
    "USD": RoundingRule(Decimal("0.01"), ending=Decimal("0.99")),
    "SGD": RoundingRule(Decimal("0.1"), ending=Decimal("0.90")),
}
SIZE_FACTORS = {
    "250g": Decimal(1),
    "500g": Decimal("1.85"),
    "1kg": Decimal("3.4"),
    "50g": Decimal(1),
    "100g": Decimal("1.8"),
}


def _prices(session: Session, actor: Principal) -> None:
    _, products = build_catalog()
    ids = catalog_service.variant_ids_by_sku(session, [v.sku for p in products for v in p.variants])
    for code, name, base, inclusive, currencies in PRICE_LISTS:
        pricing.create_price_list(
            session, actor, code=code, name=name, base_currency=base, tax_inclusive=inclusive
        )
        rows = []
        for product in products:
            euros = Decimal(product.base_price) / 100
            for variant in product.variants:
                factor = SIZE_FACTORS.get(variant.options.get("weight", ""), Decimal(1))
                for currency, rate, rule in currencies:
                    amount = rule.apply(euros * factor * rate, currency)
                    rows.append(pricing.PriceInput(ids[variant.sku], currency, amount))
        pricing.set_prices(session, actor, code, rows)
    effective = datetime(2026, 1, 1, tzinfo=UTC)
    pricing.import_rates(
        session,
        actor,
        [pricing.RateInput("EUR", quote, rate, effective, "demo") for quote, rate in RATES.items()],
    )
    for currency, rule in ROUNDING.items():
        pricing.set_rounding(session, actor, currency, rule)


def _loyalty(session: Session, actor: Principal) -> None:
    """A points programme every channel earns and spends in: 1 point per 100 JPY or per
    euro, dollar or 20,000 dong; a point pays 1 JPY / 0.01 EUR; two tiers above members."""
    def rule(currency: str, per: str, value: str) -> CurrencyRuleIn:
        return CurrencyRuleIn(
            currency=currency, earn_points=1, earn_amount=Decimal(per), point_value=Decimal(value)
        )

    loyalty.configure(
        session,
        actor,
        ProgrammeIn(
            name="Mercato Rewards",
            expiry_months=24,
            currencies=[
                rule("JPY", "100", "1"),
                rule("EUR", "1", "0.01"),
                rule("USD", "1", "0.01"),
                rule("SGD", "1", "0.01"),
                rule("VND", "20000", "200"),
            ],
            tiers=[
                TierIn(
                    code="silver",
                    name="Silver",
                    threshold=500,
                    earn_multiplier=Decimal("1.25"),
                    customer_group="silver",
                ),
                TierIn(
                    code="gold",
                    name="Gold",
                    threshold=2000,
                    earn_multiplier=Decimal("1.5"),
                    customer_group="gold",
                ),
            ],
        ),
    )


def seed(database: Database) -> DemoCredentials:
    """Load the demo business in one transaction; refuses a database that already has it.

    Its events (thousands of catalogue and stock changes) are recorded as already handled:
    nothing subscribes to a business that does not exist yet, and the first orders must
    not queue behind them.
    """
    password = secrets.token_urlsafe(12)
    with database.transaction() as session:
        if session.scalar(select(Location.id).where(Location.code == LOCATIONS[0][0])):
            raise DemoAlreadyLoaded("the demo business is already loaded in this database")
        events.record_without_delivery(session)
        owner = auth_service.bootstrap_owner(session, OWNER_EMAIL, "Demo Owner", password)
        actor = auth_service.principal_for(session, owner)
        location_ids = _locations(session, actor)
        _categories(session, actor)
        _products(session, actor)
        _stock(session, actor, location_ids)
        _prices(session, actor)
        seed_demo_shipping(session, actor)
        keys = _channels(session, actor, location_ids)
        others = _staff(session, actor, location_ids, password)
        _loyalty(session, actor)
    return DemoCredentials(
        staff_email=OWNER_EMAIL, staff_password=password, channel_keys=keys, other_staff=others
    )


def reissue_credentials(database: Database) -> DemoCredentials:
    """New credentials for a database that holds the demo business.

    Passwords and channel keys are stored hashed, so lost ones cannot be shown again: the
    demo staff get a new password and every demo channel a new key (earlier keys keep
    working for whoever still has them).
    """
    password = secrets.token_urlsafe(12)
    actor = Principal.system("demo")
    with database.transaction() as session:
        if not session.scalar(select(Location.id).where(Location.code == LOCATIONS[0][0])):
            raise DemoNotLoaded("this database does not hold the demo business")
        emails = [OWNER_EMAIL, *(f"{prefix}@mercato.example" for prefix, _, _ in STAFF)]
        users = {
            u.email: u
            for u in session.scalars(select(StaffUser).where(StaffUser.email.in_(emails)))
        }
        if OWNER_EMAIL not in users:
            raise DemoNotLoaded(f"the demo owner {OWNER_EMAIL} is gone from this database")
        for user in users.values():
            auth_service.update_user(session, actor, user.id, password=password)
        codes = [row[0] for row in CHANNELS]
        found = {
            c.code: c.id for c in session.scalars(select(Channel).where(Channel.code.in_(codes)))
        }
        keys = {}
        for code in codes:
            if code in found:
                _, keys[code] = channels_service.issue_key(
                    session, actor, found[code], f"{code} demo key (reissued)"
                )
        others = {u.email: u.role for u in users.values() if u.email != OWNER_EMAIL}
    return DemoCredentials(
        staff_email=OWNER_EMAIL, staff_password=password, channel_keys=keys, other_staff=others
    )
