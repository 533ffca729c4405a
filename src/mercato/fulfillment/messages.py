"""Service messages of fulfilment: the click & collect "ready for pickup" email.

Worded per language like the marketing templates (and rendered by the same code, so values
are escaped in the HTML body); it is a transactional message, sent whatever the customer's
marketing consent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
