from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.customers.normalize import IdentityType, normalise_phone
from mercato.i18n import normalise_locale
from mercato.locations.schemas import validate_country
from mercato.money import validate_currency
from mercato.schemas import ResponseModel, StrictModel

__all__ = ["normalise_phone"]


def _phone(value: str | None) -> str | None:
    return None if value is None else normalise_phone(value)


def _locale(value: str | None) -> str | None:
    return None if value is None else normalise_locale(value)


class RegisterIn(StrictModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=8, max_length=200)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32, description="E.164 or international")
    locale: str | None = Field(default=None, max_length=20)

    _phone = field_validator("phone")(_phone)
    _locale = field_validator("locale")(_locale)


class CustomerLoginIn(StrictModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class CustomerOut(ResponseModel):
    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    currency: str | None = None
    preferred_store_id: int | None = None
    status: str = "active"
    merged_into_id: int | None = None
    registered_channel_id: int | None
    created_at: datetime


class CustomerTokenOut(ResponseModel):
    token: str = Field(description="The access token: send it as `Authorization: Bearer ...`")
    token_type: str = "bearer"
    expires_at: datetime = Field(description="When the access token expires")
    refresh_token: str = Field(
        description="Trade it for the next pair at `POST /v1/store/customers/token`; once only"
    )
    refresh_expires_at: datetime
    customer: CustomerOut


class RefreshIn(StrictModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class CustomerPasswordIn(StrictModel):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=8, max_length=200)

    @field_validator("new_password")
    @classmethod
    def _differs(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("current_password"):
            raise ValueError("must differ from the current password")
        return value


Label = Field(min_length=1, max_length=40, pattern=r"^[\w.:\- ]+$")


class ProfilePatch(StrictModel):
    """What a customer may change on their own profile; a field sent as null is cleared."""

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32, description="E.164 or international")
    locale: str | None = Field(default=None, max_length=20, description="preferred language")
    currency: str | None = Field(default=None, max_length=3, description="preferred currency")
    preferred_store_id: int | None = Field(default=None, gt=0)

    _phone = field_validator("phone")(_phone)
    _locale = field_validator("locale")(_locale)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else validate_currency(value)


class StaffProfilePatch(ProfilePatch):
    """Staff may also set the customer's groups (read by pricing and promotions) and tags."""

    groups: list[str] | None = Field(default=None, max_length=50)
    tags: list[str] | None = Field(default=None, max_length=50)

    @field_validator("groups", "tags")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip() for v in value]
        for item in cleaned:
            if not item or len(item) > 40:
                raise ValueError("each entry must be 1 to 40 characters")
        return list(dict.fromkeys(cleaned))


class AddressIn(StrictModel):
    label: str | None = Field(default=None, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str = Field(min_length=2, max_length=2)
    phone: str | None = Field(default=None, max_length=32)
    default_shipping: bool = False
    default_billing: bool = False

    _country = field_validator("country")(validate_country)
    _phone = field_validator("phone")(_phone)


class AddressPatch(StrictModel):
    label: str | None = Field(default=None, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    line1: str | None = Field(default=None, min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    phone: str | None = Field(default=None, max_length=32)
    default_shipping: bool | None = None
    default_billing: bool | None = None

    _phone = field_validator("phone")(_phone)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return None if value is None else validate_country(value)


class AddressOut(ResponseModel):
    id: int
    label: str | None
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    # Where the coordinates come from: postal_code, city or country (geocoded offline).
    coordinates_source: str | None = None
    default_shipping: bool
    default_billing: bool
    source_channel_id: int | None
    created_at: datetime


class IdentityIn(StrictModel):
    type: IdentityType
    value: str = Field(min_length=1, max_length=254)
    verified: bool = False


class IdentityOut(ResponseModel):
    id: int
    type: str
    value: str | None
    verified: bool
    source_channel_id: int | None
    created_at: datetime
    last_seen_at: datetime


class CurrencyFiguresOut(ResponseModel):
    currency: str
    order_count: int
    lifetime_value: Decimal
    average_order_value: Decimal


class RfmOut(ResponseModel):
    recency: int
    frequency: int
    monetary: int


class FiguresOut(ResponseModel):
    order_count: int
    lifetime_value: list[CurrencyFiguresOut]
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    favourite_channel_id: int | None
    favourite_store_id: int | None
    rfm: RfmOut | None
    segment: str


class ProfileOut(CustomerOut):
    """The unified profile: the person across every channel, with derived figures."""

    groups: list[str]
    tags: list[str]
    identities: list[IdentityOut]
    addresses: list[AddressOut]
    figures: FiguresOut
    # Profiles merged into this one (their ids still appear on older records).
    merged_profile_ids: list[int]


class MergeIn(StrictModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    from_id: int = Field(alias="from", gt=0, description="the profile merged away")


class MergeOut(ResponseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    merge_id: str
    into: int
    from_id: int = Field(serialization_alias="from")
    status: str
    moved: dict[str, int]
    created_at: datetime
    undone_at: datetime | None


class SuggestionOut(ResponseModel):
    id: int
    customer_id: int
    candidate_id: int
    score: int
    reasons: list[str]
    status: str
    created_at: datetime


class TimelineEntryOut(ResponseModel):
    at: datetime
    kind: str
    source: str
    channel_id: int | None
    summary: str
    ref_type: str | None
    ref_id: str | None
    data: dict[str, Any]
