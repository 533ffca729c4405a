"""Normal forms of identifiers, names and addresses, and how alike two names are.

Blind indexes hash these normal forms, so two spellings of the same email, phone number
or address find each other without the plaintext ever being compared in SQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import phonenumbers
from rapidfuzz import fuzz

from mercato.auth.schemas import EMAIL_PATTERN


class IdentityType(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    LOYALTY_CARD = "loyalty_card"
    POS_CUSTOMER = "pos_customer"
    MARKETPLACE_BUYER = "marketplace_buyer"
    APP_DEVICE = "app_device"


# A marketplace's buyer ids are its own numbering: buyer 123 on two marketplaces are two
# people, so the id is matched only within the channel that reported it.
CHANNEL_SCOPED = frozenset({IdentityType.MARKETPLACE_BUYER})

_EMAIL = re.compile(EMAIL_PATTERN)
_CARD = re.compile(r"^[A-Z0-9]{1,64}$")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s]")


def normalise_phone(value: str, region: str | None = None) -> str:
    """E.164, or ValueError naming why the number is not one."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("not an email address")
    return email


def _card(value: str) -> str:
    # Card and customer numbers are read out, typed and scanned: spaces and dashes vary.
    cleaned = re.sub(r"[\s\-]", "", value).upper()
    if not _CARD.match(cleaned):
        raise ValueError("must be 1 to 64 letters and digits")
    return cleaned


def _opaque(value: str, longest: int) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > longest:
        raise ValueError(f"must be 1 to {longest} characters")
    return cleaned


def normalise_identity(kind: IdentityType, value: str) -> str:
    """The stored normal form of an identifier, or ValueError saying what is wrong."""
    if kind is IdentityType.EMAIL:
        return normalise_email(value)
    if kind is IdentityType.PHONE:
        return normalise_phone(value)
    if kind in (IdentityType.LOYALTY_CARD, IdentityType.POS_CUSTOMER):
        return _card(value)
    return _opaque(value, 128 if kind is IdentityType.MARKETPLACE_BUYER else 200)


def index_kind(kind: str, source_channel_id: int | None) -> str:
    """What the blind index of an identifier is keyed on besides its value."""
    if kind in CHANNEL_SCOPED:
        return f"{kind}@{source_channel_id}"
    return kind


def _fold(text: str) -> str:
    """Case, accents, punctuation and spacing removed: "Zoë  O'Brien" -> "zoe obrien"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    bare = _NOT_WORD.sub("", bare.casefold())
    return _SPACE.sub(" ", bare).strip()


def name_key(first_name: str | None, last_name: str | None) -> str | None:
    """Tokens sorted, so "Sato Hana" and "Hana Sato" are the same name."""
    tokens = _fold(f"{first_name or ''} {last_name or ''}").split()
    return " ".join(sorted(tokens)) or None


def split_name(name: str) -> tuple[str | None, str | None]:
    """A full name as (first, last): the last word is taken as the family name."""
    words = name.split()
    if not words:
        return None, None
    if len(words) == 1:
        return None, words[0]
    return " ".join(words[:-1]), words[-1]


ADDRESS_FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country", "phone")


def address_key(address: Mapping[str, Any]) -> str:
    """Country, postal code, street lines and city, folded: the same place typed twice."""
    parts = [str(address.get("country") or "").upper()]
    parts.append(_fold(str(address.get("postal_code") or "")).replace(" ", ""))
    for field in ("line1", "line2", "city"):
        parts.append(_fold(str(address.get(field) or "")))
    return "|".join(parts)


def area_key(address: Mapping[str, Any]) -> str | None:
    """Country and postal code (or city): where to look for people with similar names."""
    country = str(address.get("country") or "").upper()
    where = _fold(str(address.get("postal_code") or "")).replace(" ", "")
    where = where or _fold(str(address.get("city") or ""))
    if not country or not where:
        return None
    return f"{country}|{where}"


def name_similarity(a: str | None, b: str | None) -> int:
    """0-100: how alike two normalised names are, ignoring word order."""
    if not a or not b:
        return 0
    return round(fuzz.token_sort_ratio(a, b))
