"""Service messages of fulfilment: the click & collect "ready for pickup" email, and the
"your order ships differently" email when routing changes what checkout quoted.

Worded per language like the marketing templates (and rendered by the same code, so values
are escaped in the HTML body); it is a transactional message, sent whatever the customer's
marketing consent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_datetime

from mercato.marketing.templates import (
    Highlight,
    Paragraph,
    Rendered,
    Wording,
    best_language,
    formatting_locale,
    render,
)

READY_FOR_PICKUP = "ready_for_pickup"


def _wording(subject: str, *blocks: Paragraph | Highlight, separator: str = ": ") -> Wording:
    # The offer phrases of Wording name discounts, which this message has none of.
    return Wording(subject, tuple(blocks), "", "", "", separator)


_READY: Mapping[str, Wording] = {
    "en": _wording(
        "Your order $number is ready for pickup",
        Paragraph("Hello,"),
        Paragraph("Your order $number is waiting for you at $store."),
        Highlight("Pickup code", "$code"),
        Highlight("Store", "$store, $address"),
        Highlight("Collect by", "$expires"),
        Paragraph(
            "Show the code at the counter. If the order is not collected by then, it is "
            "cancelled and your payment is released."
        ),
    ),
    # Japanese typography uses full-width punctuation.
    "ja": _wording(
        "ご注文 $number の商品をお受け取りいただけます",
        Paragraph("ご利用いただきありがとうございます。"),
        Paragraph("ご注文 $number の商品を $store にてご用意しました。"),
        Highlight("受け取りコード", "$code"),
        Highlight("店舗", "$store、$address"),
        Highlight("受け取り期限", "$expires"),
        Paragraph(
            "カウンターでこのコードをご提示ください。期限までにお受け取りがない場合、"
            "ご注文はキャンセルされ、お支払いは解除されます。"
        ),
        separator="：",  # noqa: RUF001
    ),
    "de": _wording(
        "Ihre Bestellung $number liegt zur Abholung bereit",
        Paragraph("Guten Tag,"),
        Paragraph("Ihre Bestellung $number wartet in unserer Filiale $store auf Sie."),
        Highlight("Abholcode", "$code"),
        Highlight("Filiale", "$store, $address"),
        Highlight("Abholen bis", "$expires"),
        Paragraph(
            "Zeigen Sie den Code an der Kasse. Wird die Bestellung bis dahin nicht abgeholt, "
            "wird sie storniert und Ihre Zahlung freigegeben."
        ),
    ),
    "vi": _wording(
        "Đơn hàng $number của bạn đã sẵn sàng để nhận",
        Paragraph("Xin chào,"),
        Paragraph("Đơn hàng $number của bạn đang chờ bạn tại $store."),
        Highlight("Mã nhận hàng", "$code"),
        Highlight("Cửa hàng", "$store, $address"),
        Highlight("Nhận trước", "$expires"),
        Paragraph(
            "Vui lòng xuất trình mã tại quầy. Nếu đơn hàng không được nhận trước thời hạn, "
            "đơn sẽ bị hủy và khoản thanh toán của bạn được hoàn lại."
        ),
    ),
}


def language_of(locale: str | None) -> str:
    """The most specific language of the locale's fallback chain that has a wording."""
    return best_language(_READY, locale)


@dataclass(frozen=True)
class PickupDetails:
    order_number: str
    code: str
    store: str
    address: str
    expires_at: datetime
    timezone: str


def render_ready_for_pickup(locale: str | None, details: PickupDetails) -> Rendered:
    language = language_of(locale)
    where = formatting_locale(locale, language).replace("-", "_")
    expires = format_datetime(
        details.expires_at, format="medium", tzinfo=_zone(details.timezone), locale=where
    )
    values = {
        "number": details.order_number,
        "code": details.code,
        "store": details.store,
        "address": details.address,
        "expires": expires,
    }
    return render(language, _READY[language], values)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --- the parcel leaves from elsewhere, or with another carrier, than quoted -------------------

SHIPPING_CHANGED = "shipping_changed"

_CHANGED: Mapping[str, Wording] = {
    "en": _wording(
        "Your order $number ships differently",
        Paragraph("Hello,"),
        Paragraph(
            "Your order $number leaves from $origin, so it travels with another carrier "
            "than the one shown at checkout."
        ),
        Highlight("Now", "$carrier, $days"),
        Highlight("Shown at checkout", "$quoted_carrier, $quoted_days"),
        Paragraph("You pay nothing more for shipping. We will send the tracking number."),
    ),
    "ja": _wording(
        "ご注文 $number の配送方法が変わりました",
        Paragraph("ご利用いただきありがとうございます。"),
        Paragraph(
            "ご注文 $number は $origin から発送されるため、ご注文時に表示された配送業者とは"
            "異なる業者がお届けします。"
        ),
        Highlight("配送", "$carrier、$days"),
        Highlight("ご注文時の表示", "$quoted_carrier、$quoted_days"),
        Paragraph("追加の送料はかかりません。追跡番号は発送時にお知らせします。"),
        separator="：",  # noqa: RUF001
    ),
    "de": _wording(
        "Ihre Bestellung $number wird anders versendet",
        Paragraph("Guten Tag,"),
        Paragraph(
            "Ihre Bestellung $number wird aus $origin versendet und reist daher mit einem "
            "anderen Versanddienst als beim Kauf angezeigt."
        ),
        Highlight("Jetzt", "$carrier, $days"),
        Highlight("Beim Kauf angezeigt", "$quoted_carrier, $quoted_days"),
        Paragraph("Für den Versand zahlen Sie nichts dazu. Die Sendungsnummer folgt."),
    ),
    "vi": _wording(
        "Đơn hàng $number của bạn được giao theo cách khác",
        Paragraph("Xin chào,"),
        Paragraph(
            "Đơn hàng $number được gửi từ $origin, nên sẽ do một đơn vị vận chuyển khác "
            "với đơn vị hiển thị khi thanh toán đảm nhận."
        ),
        Highlight("Hiện tại", "$carrier, $days"),
        Highlight("Khi thanh toán", "$quoted_carrier, $quoted_days"),
        Paragraph("Bạn không phải trả thêm phí vận chuyển. Chúng tôi sẽ gửi mã vận đơn."),
    ),
}

_DAYS = {"en": "{} days", "ja": "{}日", "de": "{} Tage", "vi": "{} ngày"}


def days_text(min_days: int | None, max_days: int | None) -> str:
    """Transit time as a range of days (2 to 5 with an en dash), the same in every
    language; "" when unknown."""
    if min_days is None or max_days is None:
        return ""
    return str(max_days) if min_days == max_days else f"{min_days}\u2013{max_days}"


@dataclass(frozen=True)
class ShippingChange:
    order_number: str
    origin_country: str  # ISO 3166-1 alpha-2, named in the message's language
    carrier: str
    days: str
    quoted_carrier: str
    quoted_days: str


def render_shipping_changed(locale: str | None, change: ShippingChange) -> Rendered:
    language = best_language(_CHANGED, locale)
    unit = _DAYS.get(language, _DAYS["en"])
    values = {
        "number": change.order_number,
        "origin": Locale.parse(language).territories.get(
            change.origin_country, change.origin_country
        ),
        "carrier": change.carrier,
        "days": unit.format(change.days) if change.days else "",
        "quoted_carrier": change.quoted_carrier,
        "quoted_days": unit.format(change.quoted_days) if change.quoted_days else "",
    }
    return render(language, _CHANGED[language], values)
