"""Duty and import tax estimates: worked examples, de minimis, intra-EU, HS rates, the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.auth.models import AuditEntry
from mercato.db import Database
from mercato.errors import UnprocessableState, ValidationProblem
from mercato.money import quantize
from mercato.shipping import customs, service
from mercato.shipping.customs import CustomsRules, DutyItem
from mercato.shipping.models import CustomsCountry, CustomsDutyRate
from mercato.shipping.schemas import CustomsIn, DutyRateIn
from tests.conftest import assert_problem
from tests.helpers import count
from tests.shipping.conftest import ACTOR

D = Decimal
Headers = dict[str, str]

US = CustomsRules(
    "US",
    "USD",
    D("0.05"),
    D("0"),
    tax_name="none",
    duty_de_minimis=D("800"),
    valuation="fob",
    duty_rates={"61": D("0.16"), "69": D("0.08")},
)
DE = CustomsRules(
    "DE",
    "EUR",
    D("0.04"),
    D("0.19"),
    tax_name="import VAT",
    duty_de_minimis=D("150"),
    duty_rates={"09": D("0.03"), "69": D("0.06"), "6912": D("0.12")},
    preferential_origins=frozenset({"JP"}),
)


def estimate(
    rules: CustomsRules | None,
    origin: str,
    items: list[DutyItem],
    shipping: str = "0",
    fx: Decimal | None = None,
) -> customs.DutyEstimate:
    currency = items[0].currency
    destination = rules.country if rules else "DE"
    return customs.estimate(
        rules,
        destination_country=destination,
        origin_country=origin,
        items=items,
        shipping_amount=D(shipping),
        currency=currency,
        fx_rate=fx,
    )


def test_us_under_de_minimis_pays_nothing() -> None:
    result = estimate(US, "JP", [DutyItem("610910", "JP", D("300.00"), "USD")] * 2)
    assert (result.duty, result.import_tax, result.total) == (D("0.00"),) * 3
    assert result.de_minimis_applied and result.goods_value == D("600.00")
    # Exactly at the threshold is still exempt ("not more than 800").
    assert estimate(US, "JP", [DutyItem("6109", "JP", D("800"), "USD")]).de_minimis_applied


def test_us_over_de_minimis_fob() -> None:
    """500 USD of T-shirts (ch. 61, 16%) and 400 USD of mugs (ch. 69, 8%), 40 USD shipping.

    FOB: shipping is not part of the customs value. Duty 80.00 + 32.00 = 112.00; no import
    tax in the US.
    """
    items = [DutyItem("6109.10", "CN", D("500"), "USD"), DutyItem("691200", "JP", D("400"), "USD")]
    result = estimate(US, "JP", items, shipping="40")
    assert not result.de_minimis_applied
    assert [x.duty for x in result.lines] == [D("80.00"), D("32.00")]
    assert [x.customs_value for x in result.lines] == [D("500.00"), D("400.00")]
    assert (result.duty, result.import_tax, result.total) == (D("112.00"), D("0.00"), D("112.00"))


def test_germany_cif_with_import_vat() -> None:
    """From the US: coffee 100 EUR (ch. 09, 3%), porcelain 150 EUR (heading 6912, 12%),
    shipping 25 EUR spread 10 / 15 by value.

    customs values 110 and 165; duty 3.30 and 19.80; import VAT 19% of value + shipping +
    duty: (110 + 3.30) x 0.19 = 21.527 -> 21.53, (165 + 19.80) x 0.19 = 35.112 -> 35.11.
    """
    items = [DutyItem("090121", "US", D("100"), "EUR"), DutyItem("6912.00", "US", D("150"), "EUR")]
    result = estimate(DE, "US", items, shipping="25")
    assert [x.shipping_share for x in result.lines] == [D("10.00"), D("15.00")]
    assert [x.duty_rate for x in result.lines] == [D("0.03"), D("0.12")]  # heading beats chapter
    assert [x.duty for x in result.lines] == [D("3.30"), D("19.80")]
    assert [x.import_tax for x in result.lines] == [D("21.53"), D("35.11")]
    assert (result.duty, result.import_tax, result.total) == (D("23.10"), D("56.64"), D("79.74"))
    assert result.tax_name == "import VAT" and result.crosses_border


def test_eu_duty_de_minimis_keeps_import_vat() -> None:
    # 120 EUR of goods: no duty (<= 150 EUR) but VAT from the first euro: (120 + 10) x 19%.
    result = estimate(DE, "US", [DutyItem("6109", "US", D("120"), "EUR")], shipping="10")
    assert result.de_minimis_applied and not result.tax_de_minimis_applied
    assert (result.duty, result.import_tax) == (D("0.00"), D("24.70"))


def test_default_rate_and_preferential_origin() -> None:
    items = [
        DutyItem("8471", "US", D("200"), "EUR"),
        DutyItem("6912", "JP", D("200"), "EUR"),
        DutyItem(None, "US", D("100"), "EUR"),
    ]
    result = estimate(DE, "JP", items)
    assert [x.duty_rate for x in result.lines] == [D("0.04"), D("0"), D("0.04")]
    assert [x.preferential for x in result.lines] == [False, True, False]
    assert result.duty == D("12.00")  # 8.00 + 0 + 4.00; VAT is still due on all three
    # VAT: (200 + 8) x 19% = 39.52, 200 x 19% = 38.00, (100 + 4) x 19% = 19.76
    assert [x.import_tax for x in result.lines] == [D("39.52"), D("38.00"), D("19.76")]
    assert result.import_tax == D("97.28")


def test_no_duties_inside_the_eu_or_one_country() -> None:
    items = [DutyItem("6109", "CN", D("900"), "EUR")]
    for origin in ("FR", "DE"):
        result = estimate(DE, origin, items, shipping="5")
        assert not result.crosses_border and result.total == D("0.00")
        assert result.notes == ("no customs border between origin and destination",)
    unknown = customs.estimate(
        None,
        destination_country="BR",
        origin_country="DE",
        items=items,
        shipping_amount=D(0),
        currency="EUR",
    )
    assert unknown.crosses_border and unknown.total == D("0.00")
    assert unknown.notes == ("no customs rules configured for BR",)


def test_foreign_threshold_uses_the_customs_exchange_rate() -> None:
    jp = CustomsRules(
        "JP", "JPY", D("0.05"), D("0.10"), duty_de_minimis=D("10000"), tax_de_minimis=D("10000")
    )
    # 1 JPY = 0.0066... USD: 66 USD is 9,900 JPY (exempt), 67 USD is 10,050 JPY (not).
    fx = D(1) / D(150)
    under = estimate(jp, "US", [DutyItem("6109", "US", D("66"), "USD")], fx=fx)
    assert under.de_minimis_applied and under.tax_de_minimis_applied and under.total == D("0.00")
    over = estimate(jp, "US", [DutyItem("6109", "US", D("67"), "USD")], fx=fx)
    assert (over.duty, over.import_tax) == (D("3.35"), D("7.04"))  # 67 x 5%; 70.35 x 10%


amounts = st.decimals(min_value=D("0"), max_value=D("100000"), places=2, allow_nan=False)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(amounts, min_size=1, max_size=8),
    shipping=amounts,
    chapters=st.lists(
        st.sampled_from(["0901", "6912", "6109", "8471", "9999"]), min_size=8, max_size=8
    ),
)
def test_estimate_totals_are_the_sums_of_their_lines(
    values: list[Decimal], shipping: Decimal, chapters: list[str]
) -> None:
    items = [DutyItem(hs, "US", v, "EUR") for v, hs in zip(values, chapters, strict=False)]
    result = estimate(DE, "US", items, shipping=str(shipping))
    assert result.duty == sum((x.duty for x in result.lines), D(0))
    assert result.import_tax == sum((x.import_tax for x in result.lines), D(0))
    assert result.total == result.duty + result.import_tax
    assert sum((x.shipping_share for x in result.lines), D(0)) == shipping
    for line in result.lines:
        for amount in (line.duty, line.import_tax, line.customs_value):
            assert amount == quantize(amount, "EUR") and amount >= 0
        assert line.customs_value == line.value + line.shipping_share  # CIF
    assert result.de_minimis_applied == (sum(values, D(0)) <= D("150"))


# --- through the service and the API ----------------------------------------------------------


def _configure(db: Database) -> None:
    with db.transaction() as session:
        service.put_customs(
            session,
            ACTOR,
            "JP",
            CustomsIn(
                currency="JPY",
                duty_de_minimis=D("10000"),
                tax_de_minimis=D("10000"),
                default_duty_rate=D("0.05"),
                import_tax_rate=D("0.10"),
                tax_name="consumption tax",
                duty_rates=[DutyRateIn(hs_prefix="09", rate=D("0.12"))],
            ),
        )


def test_service_converts_thresholds_and_needs_a_rate(db: Database) -> None:
    _configure(db)
    items: list[Any] = [("0901.21", "US", D("70"), "USD")]
    with db.read() as session, pytest.raises(UnprocessableState) as missing:
        service.estimate_duties(session, "JP", "US", items, D("10"))
    assert missing.value.code == "customs-exchange-rate-missing"
    with db.transaction() as session:
        service.put_exchange_rate(session, ACTOR, "USD", "JPY", D("150"))
    with db.read() as session:
        over = service.estimate_duties(session, "JP", "US", items, D("10"))
        # The rate is stored one way and used either way (JPY -> USD here).
        under = service.estimate_duties(session, "JP", "US", [("09", "US", D("66"), "USD")])
    assert over.currency == "USD" and over.duty == D("9.60")  # (70 + 10) x 12%, CIF
    assert over.import_tax == D("8.96")  # (80 + 9.60) x 10%
    assert under.total == D("0.00") and under.de_minimis_applied
    with db.read() as session:
        yen = service.estimate_duties(session, "JP", "DE", [("6109", "DE", D("12000"), "JPY")])
    assert yen.duty == D("600") and yen.import_tax == D("1260")  # no conversion needed


BAD_ESTIMATES: list[tuple[tuple[Any, ...], str]] = [
    (("XX", "US", [("09", "US", D("1"), "USD")]), "body.destination_country"),
    (("JP", "US", []), "body.items"),
    (("JP", "US", [("09", "US", D("1.001"), "USD")]), "body.items[0].value"),
    (
        ("JP", "US", [("09", "US", D("1"), "USD"), ("09", "US", D("1"), "EUR")]),
        "body.items[1].currency",
    ),
    (("JP", "US", [("9", "US", D("1"), "USD")]), "body.items[0].hs_code"),
    (("JP", "US", [("09", "UK", D("1"), "USD")]), "body.items[0].origin_country"),
]


def test_bad_estimate_inputs(db: Database) -> None:
    for args, field in BAD_ESTIMATES:
        with db.read() as session, pytest.raises(ValidationProblem) as bad:
            service.estimate_duties(session, *args)
        assert bad.value.errors[0]["field"] == field, args


@pytest.mark.slow
def test_customs_api(client: TestClient, owner_headers: Headers, db: Database) -> None:
    body = {
        "currency": "EUR",
        "duty_de_minimis": "150",
        "default_duty_rate": "0.04",
        "import_tax_rate": "0.19",
        "tax_name": "import VAT",
        "preferential_origins": ["JP"],
        "duty_rates": [{"hs_prefix": "61", "rate": "0.12", "description": "apparel"}],
    }
    put = client.put("/v1/shipping/customs/de", json=body, headers=owner_headers)
    assert put.status_code == 200, put.text
    saved = put.json()
    assert saved["country"] == "DE" and saved["duty_de_minimis"] == "150.00"
    assert saved["import_tax_rate"] == "0.19" and saved["tax_de_minimis"] is None
    assert saved["duty_rates"] == [{"hs_prefix": "61", "rate": "0.12", "description": "apparel"}]
    estimate_body = {
        "destination_country": "DE",
        "origin_country": "US",
        "shipping_amount": "10",
        "items": [{"hs_code": "6109", "origin_country": "US", "value": "190", "currency": "EUR"}],
    }
    result = client.post(
        "/v1/shipping/duty-estimates", json=estimate_body, headers=owner_headers
    ).json()
    # duty (190 + 10) x 12% = 24.00; VAT (200 + 24) x 19% = 42.56
    assert (result["duty"], result["import_tax"], result["total"]) == ("24.00", "42.56", "66.56")
    assert result["lines"][0]["shipping_share"] == "10.00"
    rate = client.put(
        "/v1/shipping/customs-exchange-rates/usd/eur", json={"rate": "0.92"}, headers=owner_headers
    )
    assert rate.status_code == 200 and rate.json()["from_currency"] == "USD"
    rates = client.get("/v1/shipping/customs-exchange-rates", headers=owner_headers).json()
    assert len(rates["items"]) == 1
    customs = client.get("/v1/shipping/customs", headers=owner_headers).json()
    assert [c["country"] for c in customs["items"]] == ["DE"]
    audits = count(db, AuditEntry)
    bad = [
        ({**body, "default_duty_rate": "0.1234567"}, "body.default_duty_rate"),
        ({**body, "duty_de_minimis": "150.001"}, "body.duty_de_minimis"),
        ({**body, "currency": "EUX"}, "body.currency"),
        ({**body, "preferential_origins": ["JP", "QQ"]}, "body.preferential_origins[1]"),
        (
            {
                **body,
                "duty_rates": [
                    {"hs_prefix": "61", "rate": "0.1"},
                    {"hs_prefix": "61", "rate": "0.2"},
                ],
            },
            "body.duty_rates[1].hs_prefix",
        ),
        (
            {**body, "duty_rates": [{"hs_prefix": "6", "rate": "0.1"}]},
            "body.duty_rates[0].hs_prefix",
        ),
        ({**body, "valuation": "ddp"}, "body.valuation"),
    ]
    for payload, field in bad:
        problem = assert_problem(
            client.put("/v1/shipping/customs/DE", json=payload, headers=owner_headers), 422
        )
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    unknown = client.put("/v1/shipping/customs/XX", json=body, headers=owner_headers)
    assert assert_problem(unknown, 422)["errors"][0]["field"] == "path.country"
    assert count(db, AuditEntry) == audits
    assert count(db, CustomsCountry) == 1 and count(db, CustomsDutyRate) == 1
    deleted = client.delete("/v1/shipping/customs/DE", headers=owner_headers)
    assert deleted.status_code == 204
    assert_problem(client.get("/v1/shipping/customs/DE", headers=owner_headers), 404)
    assert count(db, CustomsDutyRate) == 0
