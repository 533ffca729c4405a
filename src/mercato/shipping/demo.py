"""Demo shipping configuration for the markets of the demo business (JP, DE, SG, VN, US).

Generic carriers (no real brands): one domestic carrier per market, a German carrier that
also serves Austria, France and the Netherlands, and two international carriers (economy
and express) between all of them. Prices are plausible round numbers, not any carrier's
tariff.

Customs rules are APPROXIMATIONS for demonstration, not advice: duty rates are rounded
averages of the MFN rates of a few HS chapters (09 coffee and tea, 61 knitted apparel,
69 ceramics, 84 machinery); thresholds are the commonly quoted ones (US 800 USD, which the
US suspended in 2025; EU 150 EUR for duty with import VAT due from the first euro; JP
10,000 JPY; SG 400 SGD for GST; VN 1,000,000 VND, abolished for express parcels in
2025); preferential origins stand for free-trade agreements whose proofs of origin the
demo assumes. Exchange rates are rounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.money import RoundingRule
from mercato.shipping import service
from mercato.shipping.carriers import ServiceLevel, ServiceScope
from mercato.shipping.schemas import (
    BracketIn,
    CarrierIn,
    CustomsIn,
    DutyRateIn,
    RateTableIn,
    ServiceIn,
    ZoneIn,
    ZoneMemberIn,
)

D = Decimal
EU_NEAR = ["AT", "FR", "NL"]
MARKETS = ["JP", "DE", *EU_NEAR, "SG", "VN", "US"]

# code, name, tracking prefix, time zone, ships from, ships to
CARRIERS = [
    ("jp-parcel", "JP Domestic Parcel", "JD", "Asia/Tokyo", ["JP"], ["JP"]),
    ("eu-parcel", "EU Parcel Network", "ED", "Europe/Berlin", ["DE"], ["DE", *EU_NEAR]),
    ("sg-courier", "SG Local Courier", "SD", "Asia/Singapore", ["SG"], ["SG"]),
    ("vn-delivery", "VN Domestic Delivery", "VD", "Asia/Ho_Chi_Minh", ["VN"], ["VN"]),
    ("us-parcel", "US Ground Parcel", "UD", "America/Chicago", ["US"], ["US"]),
    ("intl-economy", "Global Economy Post", "IE", "UTC", MARKETS, MARKETS),
    ("intl-express", "Global Express Courier", "IX", "UTC", MARKETS, MARKETS),
]

S = ServiceLevel
DOM, INTL, ANY = ServiceScope.DOMESTIC, ServiceScope.INTERNATIONAL, ServiceScope.ANY
# carrier, code, name, level, scope, min days, max days
SERVICES = [
    ("jp-parcel", "standard", "Standard", S.STANDARD, DOM, 1, 2),
    ("jp-parcel", "express", "Next day", S.EXPRESS, DOM, 1, 1),
    ("eu-parcel", "standard", "Standard", S.STANDARD, DOM, 1, 2),
    ("eu-parcel", "express", "Express", S.EXPRESS, DOM, 1, 1),
    ("eu-parcel", "europe", "Europe standard", S.STANDARD, INTL, 2, 5),
    ("eu-parcel", "europe-express", "Europe express", S.EXPRESS, INTL, 1, 2),
    ("sg-courier", "standard", "Standard", S.STANDARD, DOM, 1, 2),
    ("sg-courier", "express", "Same day", S.EXPRESS, DOM, 0, 1),
    ("vn-delivery", "standard", "Standard", S.STANDARD, DOM, 2, 4),
    ("vn-delivery", "express", "Express", S.EXPRESS, DOM, 1, 2),
    ("us-parcel", "ground", "Ground", S.STANDARD, DOM, 2, 5),
    ("us-parcel", "express", "2-day express", S.EXPRESS, DOM, 1, 2),
    ("intl-economy", "economy", "International economy", S.ECONOMY, INTL, 6, 15),
    ("intl-express", "express", "International express", S.EXPRESS, INTL, 2, 5),
]

Member = tuple[str, str | None, str | None]  # country, region, postal prefix
ZONES: list[tuple[str, str, list[Member]]] = [
    ("jp", "Japan", [("JP", None, None)]),
    ("jp-okinawa", "Japan: Okinawa", [("JP", None, "90")]),
    ("de", "Germany", [("DE", None, None)]),
    ("eu-near", "Austria, France, Netherlands", [(c, None, None) for c in EU_NEAR]),
    ("sg", "Singapore", [("SG", None, None)]),
    ("vn", "Vietnam", [("VN", None, None)]),
    ("vn-metro", "Hanoi and Ho Chi Minh City", [("VN", "HN", None), ("VN", "SG", None)]),
    ("us", "United States", [("US", None, None)]),
    ("us-noncontiguous", "Alaska and Hawaii", [("US", "AK", None), ("US", "HI", None)]),
    ("intl-asia", "Asia", [("JP", None, None), ("SG", None, None), ("VN", None, None)]),
    ("intl-europe", "Europe", [(c, None, None) for c in ["DE", *EU_NEAR]]),
    ("intl-north-america", "North America", [("US", None, None)]),
]

# North and Baltic Sea islands (Sylt, Foehr, Helgoland, Norderney, Borkum, ...).
DE_ISLANDS = ["25980", "25938", "27498", "26548", "26757", "26486", "26474", "26465", "26571",
              "26579", "18565"]  # fmt: skip

Brackets = list[tuple[int, str]]
# carrier, service, zone, origin, currency, brackets, per extra kg, free over, remote
DOMESTIC_TABLES: list[
    tuple[str, str, str, str, str, Brackets, str | None, str | None, tuple[str, list[str]] | None]
] = [
    ("jp-parcel", "standard", "jp", "JP", "JPY",
     [(2000, "800"), (5000, "1100"), (10000, "1500"), (20000, "2200")], "120", "5000", None),
    ("jp-parcel", "standard", "jp-okinawa", "JP", "JPY",
     [(2000, "1400"), (5000, "1900"), (10000, "2600"), (20000, "3600")], "200", "5000", None),
    ("jp-parcel", "express", "jp", "JP", "JPY",
     [(2000, "1200"), (5000, "1600"), (10000, "2200"), (20000, "3000")], "180", None, None),
    ("jp-parcel", "express", "jp-okinawa", "JP", "JPY",
     [(2000, "1900"), (5000, "2500"), (10000, "3300"), (20000, "4500")], "250", None, None),
    ("eu-parcel", "standard", "de", "DE", "EUR",
     [(1000, "4.49"), (2000, "5.49"), (5000, "6.99"), (10000, "9.49"), (31500, "16.49")],
     None, "50", ("3.50", DE_ISLANDS)),
    ("eu-parcel", "express", "de", "DE", "EUR",
     [(1000, "9.90"), (2000, "12.90"), (5000, "16.90"), (10000, "22.90"), (31500, "34.90")],
     None, None, ("3.50", DE_ISLANDS)),
    ("eu-parcel", "europe", "eu-near", "DE", "EUR",
     [(1000, "9.49"), (2000, "11.49"), (5000, "14.99"), (10000, "19.99"), (31500, "29.99")],
     None, "100", None),
    ("eu-parcel", "europe-express", "eu-near", "DE", "EUR",
     [(1000, "19.90"), (2000, "24.90"), (5000, "32.90"), (10000, "44.90"), (31500, "64.90")],
     None, None, None),
    ("sg-courier", "standard", "sg", "SG", "SGD",
     [(1000, "4.50"), (3000, "6.50"), (5000, "8.90"), (10000, "12.90")], "1.20", "60", None),
    ("sg-courier", "express", "sg", "SG", "SGD",
     [(1000, "12.00"), (3000, "15.00"), (5000, "19.00"), (10000, "25.00")], "2.00", None, None),
    ("vn-delivery", "standard", "vn-metro", "VN", "VND",
     [(1000, "22000"), (3000, "30000"), (5000, "40000"), (10000, "65000")], "5000", "500000",
     None),
    ("vn-delivery", "standard", "vn", "VN", "VND",
     [(1000, "30000"), (3000, "42000"), (5000, "55000"), (10000, "85000")], "7000", "500000",
     None),
    ("vn-delivery", "express", "vn-metro", "VN", "VND",
     [(1000, "35000"), (3000, "48000"), (5000, "60000"), (10000, "95000")], "8000", None, None),
    ("vn-delivery", "express", "vn", "VN", "VND",
     [(1000, "45000"), (3000, "60000"), (5000, "78000"), (10000, "120000")], "10000", None,
     None),
    ("us-parcel", "ground", "us", "US", "USD",
     [(454, "5.99"), (2268, "8.99"), (4536, "12.99"), (9072, "18.99")], "1.50", "75", None),
    ("us-parcel", "ground", "us-noncontiguous", "US", "USD",
     [(454, "9.99"), (2268, "14.99"), (4536, "21.99"), (9072, "34.99")], "3.00", "75", None),
    ("us-parcel", "express", "us", "US", "USD",
     [(454, "14.99"), (2268, "21.99"), (4536, "29.99"), (9072, "44.99")], "3.50", None, None),
    ("us-parcel", "express", "us-noncontiguous", "US", "USD",
     [(454, "24.99"), (2268, "34.99"), (4536, "49.99"), (9072, "74.99")], "6.00", None, None),
]  # fmt: skip

# International prices in USD, converted to each market currency and rounded up.
INTL_BASE: dict[tuple[str, str], tuple[Brackets, str]] = {
    ("intl-economy", "economy"): ([(500, "12"), (1000, "18"), (2000, "28"), (5000, "55")], "8"),
    ("intl-express", "express"): ([(500, "35"), (1000, "45"), (2000, "60"), (5000, "110")], "18"),
}
INTL_ZONE_FACTOR = {"intl-asia": D("1.0"), "intl-europe": D("1.2"), "intl-north-america": D("1.2")}
# Approximate value of 1 USD, and the step prices are rounded up to.
CURRENCY_FACTOR = {
    "USD": (D("1"), D("0.01")),
    "EUR": (D("0.92"), D("0.01")),
    "JPY": (D("150"), D("10")),
    "SGD": (D("1.35"), D("0.05")),
    "VND": (D("25000"), D("1000")),
}
INTL_FREE_OVER_USD = D("250")  # international economy is free from this order value

EU_PREFERENCES = ["JP", "SG", "VN"]  # EU-Japan EPA, EU-Singapore FTA, EU-Vietnam FTA
CHAPTERS = {"09": "coffee, tea, spices", "61": "knitted apparel", "69": "ceramic products",
            "84": "machinery"}  # fmt: skip


def _rules(
    currency: str,
    duty_threshold: str | None,
    tax_threshold: str | None,
    default: str,
    tax: str,
    tax_name: str,
    chapters: dict[str, str],
    preferential: Sequence[str],
    valuation: str = "cif",
) -> CustomsIn:
    return CustomsIn(
        currency=currency,
        duty_de_minimis=None if duty_threshold is None else D(duty_threshold),
        tax_de_minimis=None if tax_threshold is None else D(tax_threshold),
        default_duty_rate=D(default),
        import_tax_rate=D(tax),
        tax_name=tax_name,
        valuation=valuation,
        preferential_origins=list(preferential),
        duty_rates=[
            DutyRateIn(hs_prefix=ch, rate=D(rate), description=CHAPTERS[ch])
            for ch, rate in chapters.items()
        ],
        note="Approximate demo values; check current tariffs before relying on them.",
    )


EU_CHAPTERS = {"09": "0.03", "61": "0.12", "69": "0.06", "84": "0.02"}
CUSTOMS: dict[str, CustomsIn] = {
    "US": _rules("USD", "800", None, "0.05", "0", "none",
                 {"09": "0", "61": "0.16", "69": "0.08", "84": "0.025"}, [], valuation="fob"),
    "DE": _rules("EUR", "150", None, "0.04", "0.19", "import VAT", EU_CHAPTERS, EU_PREFERENCES),
    "AT": _rules("EUR", "150", None, "0.04", "0.20", "import VAT", EU_CHAPTERS, EU_PREFERENCES),
    "FR": _rules("EUR", "150", None, "0.04", "0.20", "import VAT", EU_CHAPTERS, EU_PREFERENCES),
    "NL": _rules("EUR", "150", None, "0.04", "0.21", "import VAT", EU_CHAPTERS, EU_PREFERENCES),
    "JP": _rules("JPY", "10000", "10000", "0.05", "0.10", "consumption tax",
                 {"09": "0.12", "61": "0.09", "69": "0.02", "84": "0"},
                 ["SG", "VN", "DE", *EU_NEAR]),
    "SG": _rules("SGD", None, "400", "0", "0.09", "GST", {}, []),
    "VN": _rules("VND", "1000000", "1000000", "0.10", "0.10", "import VAT",
                 {"09": "0.25", "61": "0.20", "69": "0.25", "84": "0.03"},
                 ["JP", "SG", "DE", *EU_NEAR]),
}  # fmt: skip

EXCHANGE_RATES = [
    ("USD", "JPY", "150"), ("USD", "EUR", "0.92"), ("USD", "SGD", "1.35"),
    ("USD", "VND", "25000"), ("EUR", "JPY", "163"), ("EUR", "SGD", "1.47"),
    ("EUR", "VND", "27200"), ("SGD", "JPY", "111"), ("SGD", "VND", "18500"),
    ("JPY", "VND", "167"),
]  # fmt: skip


def _convert(amount_usd: str | Decimal, currency: str) -> Decimal:
    factor, step = CURRENCY_FACTOR[currency]
    return RoundingRule(increment=step, mode="up").apply(D(amount_usd) * factor, currency)


def _carriers(session: Session, actor: Principal) -> dict[tuple[str, str], int]:
    ids: dict[str, int] = {}
    for code, name, prefix, tz, ships_from, ships_to in CARRIERS:
        carrier = service.create_carrier(
            session,
            actor,
            CarrierIn(
                code=code,
                name=name,
                tracking_prefix=prefix,
                timezone=tz,
                ships_from=ships_from,
                ships_to=ships_to,
            ),
        )
        ids[code] = carrier.id
    services: dict[tuple[str, str], int] = {}
    for carrier_code, code, name, level, scope, low, high in SERVICES:
        created = service.create_service(
            session,
            actor,
            ids[carrier_code],
            ServiceIn(code=code, name=name, level=level, scope=scope, min_days=low, max_days=high),
        )
        services[(carrier_code, code)] = created.id
    return services


def _zones(session: Session, actor: Principal) -> dict[str, int]:
    ids = {}
    for code, name, members in ZONES:
        zone = service.create_zone(
            session,
            actor,
            ZoneIn(
                code=code,
                name=name,
                members=[ZoneMemberIn(country=c, region=r, postal_prefix=p) for c, r, p in members],
            ),
        )
        ids[code] = zone.id
    return ids


def _table(
    service_id: int,
    zone_id: int,
    origin: str | None,
    currency: str,
    brackets: Brackets,
    per_kg: Decimal | str | None,
    free_over: Decimal | str | None,
    remote: tuple[str, list[str]] | None = None,
) -> RateTableIn:
    return RateTableIn(
        service_id=service_id,
        zone_id=zone_id,
        origin_country=origin,
        currency=currency,
        brackets=[BracketIn(up_to_g=g, price=D(p)) for g, p in brackets],
        per_extra_kg=None if per_kg is None else D(per_kg),
        free_over=None if free_over is None else D(free_over),
        remote_surcharge=None if remote is None else D(remote[0]),
        remote_postal_prefixes=[] if remote is None else remote[1],
    )


def _rate_tables(
    session: Session, actor: Principal, services: dict[tuple[str, str], int], zones: dict[str, int]
) -> None:
    for carrier, code, zone, origin, cur, brackets, per_kg, free, remote in DOMESTIC_TABLES:
        service.create_rate_table(
            session,
            actor,
            _table(
                services[(carrier, code)], zones[zone], origin, cur, brackets, per_kg, free, remote
            ),
        )
    for (carrier, code), (base, per_kg_usd) in INTL_BASE.items():
        for zone, factor in INTL_ZONE_FACTOR.items():
            for cur in CURRENCY_FACTOR:
                brackets = [(g, str(_convert(D(p) * factor, cur))) for g, p in base]
                free_over = _convert(INTL_FREE_OVER_USD, cur) if code == "economy" else None
                service.create_rate_table(
                    session,
                    actor,
                    _table(
                        services[(carrier, code)],
                        zones[zone],
                        None,
                        cur,
                        brackets,
                        _convert(D(per_kg_usd) * factor, cur),
                        free_over,
                    ),
                )


def seed_demo_shipping(session: Session, actor: Principal) -> None:
    """Carriers, zones, rates and customs rules for the demo markets (once per database)."""
    if service.carrier_by_code(session, CARRIERS[0][0]) is not None:
        return
    services = _carriers(session, actor)
    zones = _zones(session, actor)
    _rate_tables(session, actor, services, zones)
    for country, rules in CUSTOMS.items():
        service.put_customs(session, actor, country, rules)
    for source, target, rate in EXCHANGE_RATES:
        service.put_exchange_rate(session, actor, source, target, D(rate))
