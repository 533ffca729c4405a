from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from mercato.auth.permissions import Role
from mercato.schemas import ResponseModel, StrictModel

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class LoginIn(StrictModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class PasswordChangeIn(StrictModel):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=10, max_length=200)

    @field_validator("new_password")
    @classmethod
    def _differs(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("current_password"):
            raise ValueError("must differ from the current password")
        return value


class StaffUserOut(ResponseModel):
    id: int
    email: str
    name: str
    role: Role
    active: bool
    location_ids: list[int] = []
    locale: str | None = None
    created_at: datetime


class MePatch(StrictModel):
    """The signed-in user's own settings."""

    locale: Literal["en", "vi", "ja", "de"] | None = Field(
        description="The back office's language for you; null follows the browser"
    )


class TokenOut(ResponseModel):
    token: str
    token_type: str = "bearer"
    expires_at: datetime | None
    user: StaffUserOut


class MeOut(ResponseModel):
    user: StaffUserOut
    permissions: list[str]


class StaffUserIn(StrictModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=10, max_length=200)
    role: Role
    location_ids: list[int] = Field(default_factory=list, max_length=500)


class StaffUserPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=200)
    location_ids: list[int] | None = Field(default=None, max_length=500)


class ApiTokenIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)


class ApiTokenOut(ResponseModel):
    token: str


class AuditEntryOut(ResponseModel):
    id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    action: str
    entity_type: str
    entity_id: str | None
    changes: dict[str, Any]
    request_id: str | None
