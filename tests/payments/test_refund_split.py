"""Properties of splitting a refund over the tenders of a split payment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.errors import ValidationProblem
from mercato.money import from_minor, has_valid_precision, quantum
from mercato.payments.balances import checked_amount
from mercato.payments.service import RefundSource, allocate_refund, refund_order, split_refund

pytestmark = pytest.mark.slow

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

sources_strategy = st.lists(
    st.builds(
        RefundSource,
        payment_id=st.integers(1, 10_000),
        refundable_minor=st.integers(0, 10_000_000),
        balance_tender=st.booleans(),
        charged_at=st.one_of(
            st.none(), st.integers(0, 10_000).map(lambda m: EPOCH + timedelta(minutes=m))
        ),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda s: s.payment_id,
)


@settings(max_examples=300, deadline=None)
@given(
    sources=sources_strategy,
    currency=st.sampled_from(["EUR", "JPY", "VND", "KWD", "USD"]),
    share=st.fractions(0, 1),
)
def test_parts_sum_to_the_refund_and_never_over_refund(
    sources: list[RefundSource], currency: str, share: Fraction
) -> None:
    total = sum(s.refundable_minor for s in sources)
    minor = int(total * share)
    if minor == 0:
        return
    amount = from_minor(minor, currency)
    parts = allocate_refund(amount, currency, sources)
    assert sum((a for _, a in parts), Decimal(0)) == amount
    by_id = {s.payment_id: s for s in sources}
    assert len({pid for pid, _ in parts}) == len(parts)
    for pid, part in parts:
        assert part > 0 and has_valid_precision(part, currency)
        assert part.as_tuple().exponent == quantum(currency).as_tuple().exponent
        assert part <= from_minor(by_id[pid].refundable_minor, currency)
    # Only the last tender touched may be partly refunded; the earlier ones are emptied in
    # the documented order (money tenders first, then the most recently charged).
    order = [s for s in refund_order(sources) if s.refundable_minor > 0]
    assert [pid for pid, _ in parts] == [s.payment_id for s in order[: len(parts)]]
    for pid, part in parts[:-1]:
        assert part == from_minor(by_id[pid].refundable_minor, currency)


@settings(max_examples=100, deadline=None)
@given(sources=sources_strategy, extra=st.integers(1, 1000))
def test_more_than_refundable_is_refused(sources: list[RefundSource], extra: int) -> None:
    total = sum(s.refundable_minor for s in sources)
    with pytest.raises(ValueError):
        split_refund(total + extra, sources)


def test_order_is_money_first_then_most_recent() -> None:
    gift = RefundSource(1, 500, True, EPOCH + timedelta(days=2))
    old_card = RefundSource(2, 500, False, EPOCH)
    new_card = RefundSource(3, 500, False, EPOCH + timedelta(days=1))
    assert [s.payment_id for s in refund_order([gift, old_card, new_card])] == [3, 2, 1]
    assert split_refund(1200, [gift, old_card, new_card]) == [(3, 500), (2, 500), (1, 200)]
    with pytest.raises(ValueError):
        allocate_refund(Decimal("1.001"), "EUR", [gift])
    with pytest.raises(ValueError):
        split_refund(0, [gift])


@settings(max_examples=300, deadline=None)
@given(
    amount=st.decimals(allow_nan=True, allow_infinity=True),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_amount_validation_accepts_exact_amounts_and_refuses_the_rest(
    amount: Decimal, currency: str
) -> None:
    try:
        minor = checked_amount(amount, currency, "body.amount")
    except ValidationProblem as refused:
        assert refused.errors[0]["field"] == "body.amount"
        # (magnitude first: quantizing a huge Decimal overflows its context)
        assert (
            not amount.is_finite()
            or amount <= 0
            or abs(amount) >= 10**12
            or not has_valid_precision(amount, currency)
        )
        return
    assert minor > 0 and from_minor(minor, currency) == amount
