from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, PlainSerializer, field_validator

from mercato.money import validate_currency
from mercato.schemas import ResponseModel, StrictModel

MAX_POINTS = 10_000_000
CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def plain(value: Decimal) -> str:
    """Stored rates carry the column's scale ("2.0000"): answer them as written ("2")."""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return str(value.normalize())


# Rates and multipliers in answers, without the storage scale's trailing zeros.
Rate = Annotated[Decimal, PlainSerializer(plain, return_type=str)]

Multiplier = Annotated[
    Decimal, Field(gt=0, le=100, decimal_places=4, allow_inf_nan=False, examples=["2"])
]


class CurrencyRuleIn(StrictModel):
    currency: str = Field(min_length=3, max_length=3, examples=["JPY"])
    earn_points: int = Field(ge=0, le=1_000_000, description="Points earned per earn_amount")
    earn_amount: Decimal = Field(
        gt=0,
        le=Decimal(10) ** 9,
        allow_inf_nan=False,
        examples=["100"],
        description="Spend that earns earn_points (1 point per 100 JPY: 1 and 100)",
    )
    point_value: Decimal | None = Field(
        default=None,
        gt=0,
        le=Decimal(10) ** 6,
        allow_inf_nan=False,
        examples=["1"],
        description="What one point pays at checkout (1 JPY, 0.01 EUR); null: not redeemable",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return validate_currency(value)


class CategoryMultiplierIn(StrictModel):
    category_id: int
    multiplier: Multiplier


class TierIn(StrictModel):
    code: str = Field(min_length=1, max_length=40, pattern=CODE_PATTERN, examples=["gold"])
    name: str = Field(min_length=1, max_length=120)
    threshold: int = Field(
        ge=0, le=MAX_POINTS * 10, description="Qualifying points over the last 12 months"
    )
    earn_multiplier: Multiplier = Decimal(1)
    customer_group: str | None = Field(
        default=None, min_length=1, max_length=60, pattern=GROUP_PATTERN, examples=["gold"]
    )


class ProgrammeIn(StrictModel):
    name: str = Field(min_length=1, max_length=120)
    active: bool = True
    expiry_months: int | None = Field(
        default=None, ge=1, le=120, description="Points expire this many months after earning"
    )
    expiring_soon_days: int = Field(default=30, ge=1, le=366)
    currencies: list[CurrencyRuleIn] = Field(default_factory=list, max_length=50)
    category_multipliers: list[CategoryMultiplierIn] = Field(default_factory=list, max_length=500)
    tiers: list[TierIn] = Field(default_factory=list, max_length=20)


class CampaignIn(StrictModel):
    name: str = Field(min_length=1, max_length=120)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    multiplier: Annotated[Decimal, Field(ge=1, le=100, decimal_places=4, allow_inf_nan=False)] = (
        Decimal(1)
    )
    bonus_points: int = Field(default=0, ge=0, le=MAX_POINTS)
    first_order_only: bool = False
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=list, max_length=7, description="ISO weekdays, 1 Monday .. 7 Sunday"
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=60)
    active: bool = True

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("each weekday once")
        return sorted(value)


class AdjustmentIn(StrictModel):
    points: int = Field(description="Signed: +500 goodwill, -200 correction (never zero)")
    reason: str = Field(
        min_length=1, max_length=200, description="Why (kept on the ledger and in the audit log)"
    )
    reference: str | None = Field(default=None, max_length=64)


# --- answers ---------------------------------------------------------------------------------


class CurrencyRuleOut(ResponseModel):
    currency: str
    earn_points: int
    earn_amount: Rate
    point_value: Rate | None


class CategoryMultiplierOut(ResponseModel):
    category_id: int
    multiplier: Rate


class TierOut(ResponseModel):
    code: str
    name: str
    threshold: int
    earn_multiplier: Rate
    customer_group: str | None


class CampaignOut(ResponseModel):
    id: int
    name: str
    starts_at: datetime
    ends_at: datetime
    multiplier: Rate
    bonus_points: int
    first_order_only: bool
    weekdays: list[int]
    timezone: str
    active: bool


class ProgrammeOut(ResponseModel):
    name: str
    active: bool
    expiry_months: int | None
    expiring_soon_days: int
    tier_window: str = Field(description="How qualifying points are counted for tiers")
    currencies: list[CurrencyRuleOut]
    category_multipliers: list[CategoryMultiplierOut]
    tiers: list[TierOut]
    campaigns: list[CampaignOut]


class NextTierOut(ResponseModel):
    code: str
    name: str
    threshold: int
    points_needed: int


class ExpiringLotOut(ResponseModel):
    expires_at: datetime
    points: int


class ExpiringOut(ResponseModel):
    days: int
    points: int
    lots: list[ExpiringLotOut]


class EntryOut(ResponseModel):
    id: int
    kind: str
    points: int
    balance_after: int
    reference_type: str | None
    reference_id: str | None
    order_id: int | None
    channel_id: int | None
    reason: str | None
    created_at: datetime


class StaffEntryOut(EntryOut):
    actor_type: str | None
    actor_id: str | None


class AccountOut(ResponseModel):
    customer_id: int
    balance: int
    pending: int = Field(description="Points of orders placed and not fulfilled yet")
    tier: TierOut | None
    qualifying_points: int
    next_tier: NextTierOut | None
    expiring_soon: ExpiringOut


class RedemptionOut(ResponseModel):
    currency: str
    point_value: Rate
    balance_value: Decimal = Field(description="What the balance pays for in this currency")


class StoreLoyaltyOut(AccountOut):
    redemption: RedemptionOut | None
    history: list[EntryOut]


class MismatchOut(ResponseModel):
    customer_id: int
    balance: int
    ledger: int
    lots: int


class VerifyOut(ResponseModel):
    ok: bool
    mismatches: list[MismatchOut]


class ExpiryRunOut(ResponseModel):
    accounts: int
    points: int
