"""The personal offer message: language fallback, amounts and dates in the customer's
locale, values escaped in HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.marketing import templates
from mercato.marketing.templates import OfferDetails, render_personal_offer
from mercato.money import format_money, minor_units, quantize

EXPIRES = datetime(2031, 6, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("ja-JP", "ja"),
        ("ja", "ja"),
        ("de-AT", "de"),
        ("vi-VN", "vi"),
        ("en-SG", "en"),
        ("fr-FR", "en"),
        ("zh-Hant-TW", "en"),
        ("not a locale", "en"),
        (None, "en"),
    ],
)
def test_language_falls_back_along_the_locale_chain_then_english(
    locale: str | None, language: str
) -> None:
    assert templates.template_language(templates.PERSONAL_OFFER, locale) == language
    rendered = render_personal_offer(locale, OfferDetails("CODE1234", EXPIRES))
    assert rendered.language == language
    assert f'<html lang="{language}">' in rendered.html


def test_every_language_is_complete_and_worded_in_its_language() -> None:
    wordings = templates.TEMPLATES[templates.PERSONAL_OFFER]
    assert set(wordings) == {"en", "ja", "de", "vi"}
    expected = {
        "en": ("Your personal offer: 10% off", "June 30, 2031"),
        "ja": ("お客様だけの特別オファー：10%オフ", "2031年6月30日"),  # noqa: RUF001
        "de": ("Ihr persönliches Angebot: 10 % Rabatt", "30. Juni 2031"),
        "vi": ("Ưu đãi dành riêng cho bạn: giảm 10%", "30 tháng 6, 2031"),
    }
    for language, (subject, date) in expected.items():
        rendered = render_personal_offer(
            language, OfferDetails("CODE1234", EXPIRES, percent=Decimal("10.00"))
        )
        assert rendered.subject == subject
        assert "CODE1234" in rendered.text and date in rendered.text
        assert "$" not in rendered.text  # every placeholder filled


def test_amounts_and_numbers_follow_the_customer_locale() -> None:
    yen = render_personal_offer(
        "ja-JP", OfferDetails("C", EXPIRES, amount=Decimal(500), currency="JPY")
    )
    assert "￥500引き" in yen.subject
    euro = render_personal_offer(
        "de-DE", OfferDetails("C", EXPIRES, amount=Decimal(5), currency="EUR")
    )
    assert "5,00\u00a0€ Rabatt" in euro.subject
    swiss = render_personal_offer("de-CH", OfferDetails("C", EXPIRES, percent=Decimal("12.5")))
    assert swiss.language == "de" and "12.5 % Rabatt" in swiss.subject
    vnd = render_personal_offer(
        "vi-VN", OfferDetails("C", EXPIRES, amount=Decimal(50000), currency="VND")
    )
    assert "giảm 50.000\u00a0₫" in vnd.subject
    vague = render_personal_offer("en", OfferDetails("C", None))
    assert vague.subject.endswith("a special discount") and "Valid until: -" in vague.text


def test_values_are_escaped_in_html_but_not_in_text() -> None:
    rendered = render_personal_offer("en", OfferDetails("<b>&CODE", EXPIRES))
    assert "&lt;b&gt;&amp;CODE" in rendered.html and "<b>&CODE" not in rendered.html
    assert "Your code: <b>&CODE" in rendered.text


@given(
    currency=st.sampled_from(["JPY", "VND", "EUR", "USD", "SGD", "KWD"]),
    locale=st.sampled_from(["ja-JP", "de-DE", "vi-VN", "en-US", "en-SG"]),
    units=st.integers(min_value=1, max_value=10**12),
)
def test_any_amount_appears_exactly_as_money_formats_it(
    currency: str, locale: str, units: int
) -> None:
    amount = quantize(Decimal(units).scaleb(-minor_units(currency)), currency)
    rendered = render_personal_offer(
        locale, OfferDetails("C", EXPIRES, amount=amount, currency=currency)
    )
    formatted = format_money(amount, currency, locale)
    assert formatted in rendered.subject and formatted in rendered.text
    # Exact to the minor unit: the digits shown are the amount's digits, nothing rounded.
    assert "".join(c for c in formatted if c.isdigit()) == str(amount).replace(".", "")
