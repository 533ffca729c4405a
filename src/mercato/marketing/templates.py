"""Localised message templates and their rendering to text and HTML.

A template is plain text with ``$placeholders`` (``string.Template``), per language. The
language follows the customer's locale with fallback (``ja-JP`` -> ``ja`` -> ``en``);
amounts and dates are formatted for the customer's full locale (``de-CH`` formats numbers
the Swiss way even though the words come from ``de``). The HTML body is built from the same
blocks with every value escaped, so a value can never inject markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape
from string import Template

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal

from mercato.i18n import fallback_chain, normalise_locale
from mercato.money import format_money

DEFAULT_LANGUAGE = "en"
PERSONAL_OFFER = "personal_offer"


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Highlight:
    """A labelled value shown prominently (the code, the expiry date)."""

    label: str
    value: str


Block = Paragraph | Highlight


@dataclass(frozen=True)
class Wording:
    subject: str
    blocks: tuple[Block, ...]
    # How the offer's discount is named inside the sentences above.
    percent_off: str
    amount_off: str
    some_discount: str
    # Between a highlight's label and its value.
    separator: str = ": "


@dataclass(frozen=True)
class Rendered:
    language: str
    subject: str
    text: str
    html: str


_OFFER: dict[str, Wording] = {
    "en": Wording(
        subject="Your personal offer: $discount",
        blocks=(
            Paragraph("Hello,"),
            Paragraph(
                "Thank you for shopping with us. As a thank-you for your loyalty, here is a "
                "personal code for your next purchase: $discount."
            ),
            Highlight("Your code", "$code"),
            Highlight("Valid until", "$expires"),
            Paragraph("Use it once: online, in our app or in any of our stores."),
            Paragraph(
                "You receive this email because you agreed to receive offers by email. "
                "You can change this at any time in your account."
            ),
        ),
        percent_off="$percent% off",
        amount_off="$amount off",
        some_discount="a special discount",
    ),
    # Japanese typography uses full-width punctuation (RUF001 would have ASCII).
    "ja": Wording(
        subject="お客様だけの特別オファー：$discount",  # noqa: RUF001
        blocks=(
            Paragraph("いつもご利用いただきありがとうございます。"),
            Paragraph(
                "日頃のご愛顧に感謝して、次回のお買い物でご利用いただける"
                "お客様専用のクーポンコードをお贈りします（$discount）。"  # noqa: RUF001
            ),
            Highlight("クーポンコード", "$code"),
            Highlight("有効期限", "$expires"),
            Paragraph("オンラインストア、アプリ、全店舗のいずれかで1回ご利用いただけます。"),
            Paragraph(
                "このメールは、メールでのお知らせの受け取りに同意いただいたお客様にお送りしています。"
                "配信設定はアカウントページからいつでも変更できます。"
            ),
        ),
        percent_off="$percent%オフ",
        amount_off="$amount引き",
        some_discount="特別割引",
        separator="：",  # noqa: RUF001
    ),
    "de": Wording(
        subject="Ihr persönliches Angebot: $discount",
        blocks=(
            Paragraph("Guten Tag,"),
            Paragraph(
                "vielen Dank für Ihre Treue. Für Ihren nächsten Einkauf schenken wir Ihnen "
                "einen persönlichen Gutscheincode: $discount."
            ),
            Highlight("Ihr Code", "$code"),
            Highlight("Gültig bis", "$expires"),
            Paragraph("Einmal einlösbar: online, in unserer App oder in jeder unserer Filialen."),
            Paragraph(
                "Sie erhalten diese E-Mail, weil Sie dem Empfang von Angeboten per E-Mail "
                "zugestimmt haben. Sie können dies jederzeit in Ihrem Kundenkonto ändern."
            ),
        ),
        percent_off="$percent % Rabatt",
        amount_off="$amount Rabatt",
        some_discount="ein exklusiver Rabatt",
    ),
    "vi": Wording(
        subject="Ưu đãi dành riêng cho bạn: $discount",
        blocks=(
            Paragraph("Xin chào,"),
            Paragraph(
                "Cảm ơn bạn đã luôn tin tưởng mua sắm cùng chúng tôi. Để tri ân, chúng tôi "
                "gửi tặng bạn mã ưu đãi cá nhân cho lần mua hàng tiếp theo: $discount."
            ),
            Highlight("Mã của bạn", "$code"),
            Highlight("Có hiệu lực đến", "$expires"),
            Paragraph(
                "Mã dùng được một lần: trên website, trong ứng dụng hoặc tại bất kỳ cửa hàng "
                "nào của chúng tôi."
            ),
            Paragraph(
                "Bạn nhận được email này vì đã đồng ý nhận ưu đãi qua email. Bạn có thể thay "
                "đổi lựa chọn này bất cứ lúc nào trong tài khoản của mình."
            ),
        ),
        percent_off="giảm $percent%",
        amount_off="giảm $amount",
        some_discount="ưu đãi đặc biệt",
    ),
}

TEMPLATES: Mapping[str, Mapping[str, Wording]] = {PERSONAL_OFFER: _OFFER}


def template_language(template: str, locale: str | None) -> str:
    """The most specific language of ``locale``'s fallback chain the template has, else en."""
    return best_language(TEMPLATES[template], locale)


def best_language(wordings: Mapping[str, object], locale: str | None) -> str:
    """The most specific language of ``locale``'s fallback chain that ``wordings`` has,
    else the default language."""
    if locale:
        try:
            chain = fallback_chain(normalise_locale(locale))
        except ValueError:
            chain = []
        for candidate in chain:
            if candidate in wordings:
                return candidate
    return DEFAULT_LANGUAGE


def formatting_locale(locale: str | None, language: str) -> str:
    """The locale numbers and dates are formatted for: the customer's own when Babel knows
    it and it speaks the message's language, else the message's language."""
    if locale:
        try:
            parsed = Locale.parse(locale.replace("-", "_"))
        except (ValueError, UnknownLocaleError):
            return language
        if parsed.language == language.split("-")[0]:
            return locale
    return language


@dataclass(frozen=True)
class OfferDetails:
    """What the personal offer message says: the code, until when, and how much off."""

    code: str
    expires_at: datetime | None
    percent: Decimal | None = None
    amount: Decimal | None = None
    currency: str | None = None


def _babel(locale: str) -> str:
    return locale.replace("-", "_")


def describe_discount(wording: Wording, offer: OfferDetails, locale: str) -> str:
    if offer.percent is not None:
        number = format_decimal(offer.percent.normalize(), locale=_babel(locale))
        return Template(wording.percent_off).substitute(percent=number)
    if offer.amount is not None and offer.currency is not None:
        amount = format_money(offer.amount, offer.currency, locale)
        return Template(wording.amount_off).substitute(amount=amount)
    return wording.some_discount


def render_personal_offer(locale: str | None, offer: OfferDetails) -> Rendered:
    language = template_language(PERSONAL_OFFER, locale)
    wording = TEMPLATES[PERSONAL_OFFER][language]
    where = formatting_locale(locale, language)
    expires = (
        format_date(offer.expires_at.date(), format="long", locale=_babel(where))
        if offer.expires_at is not None
        else "-"
    )
    values = {
        "discount": describe_discount(wording, offer, where),
        "code": offer.code,
        "expires": expires,
    }
    return render(language, wording, values)


def render(language: str, wording: Wording, values: Mapping[str, str]) -> Rendered:
    subject = Template(wording.subject).substitute(values)
    blocks = [_fill(block, values) for block in wording.blocks]
    return Rendered(
        language,
        subject,
        _as_text(blocks, wording.separator),
        _as_html(language, subject, blocks, wording.separator),
    )


def _fill(block: Block, values: Mapping[str, str]) -> Block:
    if isinstance(block, Paragraph):
        return Paragraph(Template(block.text).substitute(values))
    return Highlight(block.label, Template(block.value).substitute(values))


def _as_text(blocks: Sequence[Block], separator: str) -> str:
    # Paragraphs are separated by a blank line; consecutive highlights stay together.
    groups: list[list[str]] = []
    previous: Block | None = None
    for block in blocks:
        if isinstance(block, Paragraph):
            groups.append([block.text])
        elif isinstance(previous, Highlight):
            groups[-1].append(f"{block.label}{separator}{block.value}")
        else:
            groups.append([f"{block.label}{separator}{block.value}"])
        previous = block
    return "\n\n".join("\n".join(group) for group in groups) + "\n"


def _as_html(language: str, subject: str, blocks: Sequence[Block], separator: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            body.append(f"<p>{escape(block.text)}</p>")
        else:
            body.append(
                f"<p>{escape(block.label + separator)}"
                f'<strong style="font-size:1.2em">'
                f"{escape(block.value)}</strong></p>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(language)}">\n<head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
