from __future__ import annotations

from datetime import datetime

import phonenumbers
from pydantic import Field, field_validator

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.i18n import normalise_locale
from mercato.schemas import ResponseModel, StrictModel


def normalise_phone(value: str, region: str | None = None) -> str:
    """E.164, or ValueError naming why the number is not one."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class RegisterIn(StrictModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=8, max_length=200)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=32, description="E.164 or international")
    locale: str | None = Field(default=None, max_length=20)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return None if value is None else normalise_locale(value)


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
    registered_channel_id: int | None
    created_at: datetime


class CustomerTokenOut(ResponseModel):
    token: str
    token_type: str = "bearer"
    expires_at: datetime
    customer: CustomerOut
