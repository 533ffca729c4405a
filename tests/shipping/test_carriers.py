"""The built-in carrier without a database: zones, pricing, tracking numbers, webhooks."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.money import quantize
from mercato.shipping import carriers, service
from mercato.shipping.carriers import (
    Address,
    Bracket,
    CarrierConfig,
    CarrierContext,
    CarrierInputError,
    Destination,
    InvalidSignature,
    LabelRequest,
    RateCard,
    RateRequest,
    ServiceConfig,
    TableRateCarrier,
    TableRates,
    ZoneRule,
)

D = Decimal
CONFIG = CarrierConfig(1, "post", "Post", "table", "PO", webhook_secret="s3cret-s3cret-s3cret")
STANDARD = ServiceConfig(1, "standard", "Standard", "standard", 1, 3)


def table(brackets: list[tuple[int, str]], currency: str = "EUR", **fields: object) -> TableRates:
    return TableRates(
        id=1,
        service_code="standard",
        origin_country=None,
        zone_code="all",
        zone=(ZoneRule("DE"),),
        currency=currency,
        brackets=tuple(Bracket(g, D(p)) for g, p in brackets),
        **fields,  # type: ignore[arg-type]
    )


def test_s10_check_digit_matches_the_upu_example() -> None:
    # The UPU S10 standard's own example: RA 47312482 9 GB.
    assert carriers.s10_check_digit("47312482") == 9
    assert carriers.s10_tracking_number("ra", 47312482, "gb") == "RA473124829GB"
    assert carriers.is_valid_s10("RA473124829GB")
    assert not carriers.is_valid_s10("RA473124828GB")
    assert not carriers.is_valid_s10("RA47312482GB")
    # 11 - sum % 11 of 10 becomes 0 and of 11 becomes 5.
    assert carriers.s10_check_digit("00004000") == 0  # 4 x 3 = 12: 11 - 1 = 10 -> 0
    assert carriers.s10_check_digit("00000000") == 5  # 0: 11 - 0 = 11 -> 5
    assert carriers.s10_check_digit("00000011") == 6  # 9 + 7 = 16: 11 - 5 = 6
    with pytest.raises(ValueError):
        carriers.s10_tracking_number("RA", 0, "GB")


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=carriers.MAX_S10_SERIAL))
def test_every_generated_tracking_number_validates(serial: int) -> None:
    number = carriers.s10_tracking_number("PD", serial, "DE")
    assert carriers.is_valid_s10(number) and len(number) == 13
    digits = number[2:10]
    total = sum(int(d) * w for d, w in zip(digits, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    assert int(number[10]) == {10: 0, 11: 5}.get(11 - total % 11, 11 - total % 11)


def test_zone_specificity() -> None:
    dest = Destination("DE", "BY", "80331")
    assert ZoneRule("DE").specificity(dest) == (0, 0)
    assert ZoneRule("DE", region="BY").specificity(dest) == (1, 0)
    assert ZoneRule("DE", postal_prefix="80").specificity(dest) == (2, 2)
    assert ZoneRule("DE", postal_prefix="803").specificity(dest) == (2, 3)
    assert ZoneRule("DE", postal_prefix="81").specificity(dest) is None
    assert ZoneRule("DE", region="BE").specificity(dest) is None
    assert ZoneRule("AT").specificity(dest) is None
    assert ZoneRule("DE", postal_prefix="80").specificity(Destination("DE")) is None
    rules = [ZoneRule("DE"), ZoneRule("DE", region="BY"), ZoneRule("DE", postal_prefix="8")]
    assert carriers.zone_specificity(rules, dest) == (2, 1)


def test_parcel_price() -> None:
    rates = table([(1000, "4.00"), (2000, "5.00")], per_extra_kg=D("1.10"))
    assert [rates.parcel_price(w) for w in (1, 1000, 1001, 2000, 2001, 3000, 3001)] == [
        D("4.00"),
        D("4.00"),
        D("5.00"),
        D("5.00"),
        D("6.10"),
        D("6.10"),
        D("7.20"),
    ]
    assert table([(1000, "4.00")]).parcel_price(1001) is None


brackets_strategy = st.lists(
    st.tuples(st.integers(1, 50_000), st.decimals(D("0"), D("500"), places=2)),
    min_size=1,
    max_size=6,
    unique_by=lambda b: b[0],
).map(lambda xs: sorted(xs))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    brackets=brackets_strategy,
    per_kg=st.none() | st.decimals(D("0"), D("20"), places=2),
    weights=st.lists(st.integers(1, 80_000), min_size=1, max_size=4),
    order_value=st.decimals(D("0"), D("200"), places=2),
    free_over=st.none() | st.decimals(D("0"), D("200"), places=2),
)
def test_table_pricing_properties(
    brackets: list[tuple[int, Decimal]],
    per_kg: Decimal | None,
    weights: list[int],
    order_value: Decimal,
    free_over: Decimal | None,
) -> None:
    rates = TableRates(
        1,
        "standard",
        None,
        "all",
        (ZoneRule("DE"),),
        "EUR",
        tuple(Bracket(g, p) for g, p in brackets),
        per_kg,
        free_over,
    )
    carrier = TableRateCarrier(CarrierContext(CONFIG, RateCard((STANDARD,), (rates,))))
    request = RateRequest("DE", Destination("DE"), tuple(weights), order_value, "EUR")
    found = carrier.rates(request)

    def expected_price(weight: int) -> Decimal | None:
        for up_to, price in brackets:
            if weight <= up_to:
                return price
        if per_kg is None:
            return None
        return brackets[-1][1] + math.ceil((weight - brackets[-1][0]) / 1000) * per_kg

    each = [expected_price(w) for w in weights]
    if any(p is None for p in each):
        assert found == []
        return
    (rate,) = found
    free = free_over is not None and order_value >= free_over
    assert rate.free_shipping == free
    assert rate.amount == (D("0.00") if free else sum(p for p in each if p is not None))
    assert rate.amount == quantize(rate.amount, "EUR")


def test_rates_respect_service_scope_and_currency() -> None:
    international = ServiceConfig(
        2, "world", "World", "economy", 5, 9, scope=carriers.ServiceScope.INTERNATIONAL
    )
    world = TableRates(
        2, "world", None, "all", (ZoneRule("DE"), ZoneRule("FR")), "EUR", (Bracket(1000, D("20")),)
    )
    card = RateCard((STANDARD, international), (table([(1000, "4.00")]), world))
    carrier = TableRateCarrier(CarrierContext(CONFIG, card))
    domestic = RateRequest("DE", Destination("DE"), (500,), D("10"), "EUR")
    assert [r.service_code for r in carrier.rates(domestic)] == ["standard"]
    abroad = RateRequest("AT", Destination("DE"), (500,), D("10"), "EUR")
    assert [r.service_code for r in carrier.rates(abroad)] == ["standard", "world"]
    assert carrier.rates(RateRequest("DE", Destination("DE"), (500,), D("10"), "USD")) == []


def _label_request(**fields: object) -> LabelRequest:
    base: dict[str, object] = {
        "carrier_code": "post",
        "service_code": "standard",
        "ship_from": Address("Shop", "Hafenstr. 1", "Hamburg", "DE", "20457"),
        "ship_to": Address("Erika ^FS Muster", "Hauptstr. 5", "München", "DE", "80331"),
        "weight_g": 750,
        "reference": "s-1",
    }
    return LabelRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_labels_are_deterministic_and_safe_zpl() -> None:
    serials = iter(range(41, 100))
    context = CarrierContext(CONFIG, RateCard((STANDARD,)), next_serial=lambda: next(serials))
    carrier = TableRateCarrier(context)
    first = carrier.create_label(_label_request())
    assert first.tracking_number == carriers.s10_tracking_number("PO", 41, "DE")
    again = carriers.render_zpl_label(CONFIG, STANDARD, _label_request(), first.tracking_number)
    assert again == first.content
    assert first.content is not None and "München" in first.content
    # A name cannot inject ZPL commands.
    assert "Erika  FS Muster" in first.content
    with pytest.raises(CarrierInputError) as refused:
        carrier.create_label(_label_request(service_code="teleport"))
    assert refused.value.field == "body.service_code"


def test_webhook_signature() -> None:
    carrier = TableRateCarrier(CarrierContext(CONFIG))
    body = (
        b'{"events": [{"id": "e1", "tracking_number": "PO000000410DE", "status": '
        b'"delivered", "occurred_at": "2026-03-09T10:00:00+01:00"}]}'
    )
    good = {"x-mercato-signature": carriers.sign_webhook("s3cret-s3cret-s3cret", body)}
    (event,) = carrier.parse_webhook(good, body)
    assert event.status is carriers.TrackingStatus.DELIVERED
    assert event.occurred_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    assert event.event_id == "e1"
    with pytest.raises(InvalidSignature):
        carrier.parse_webhook(good, body + b" ")
    with pytest.raises(InvalidSignature):
        carrier.parse_webhook({}, body)
    with pytest.raises(InvalidSignature):
        TableRateCarrier(CarrierContext(CarrierConfig(2, "x", "X", "table", "XX"))).parse_webhook(
            good, body
        )


def test_registry_plugs_in_an_integration_by_name() -> None:
    class Fixed(TableRateCarrier):
        pass

    carriers.register_carrier("fixed-test", Fixed)
    try:
        config = CarrierConfig(3, "fx", "Fx", "fixed-test", "FX")
        assert isinstance(carriers.carrier_for(CarrierContext(config)), Fixed)
        assert "fixed-test" in carriers.registered_adapters()
    finally:
        carriers.unregister_carrier("fixed-test")
    with pytest.raises(LookupError):
        carriers.carrier_for(CarrierContext(CarrierConfig(3, "fx", "Fx", "fixed-test", "FX")))
    with pytest.raises(ValueError):
        carriers.register_carrier("Bad Name", Fixed)


@settings(deadline=None)
@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 1, 1)), st.integers(0, 60))
def test_business_days_skip_weekends(start: date, days: int) -> None:
    end = service.add_business_days(start, days)
    assert end.weekday() < 5 and end >= start
    span = [start.fromordinal(o) for o in range(start.toordinal() + 1, end.toordinal() + 1)]
    working = sum(1 for d in span if d.weekday() < 5)
    assert working == days or (start.weekday() >= 5 and working == days + 1)
