from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from mercato.marketing.notifier import MessageChannel, MessageStatus
from mercato.marketing.service import (
    MAX_MIN_PURCHASES,
    MAX_VALID_DAYS,
    MAX_WINDOW_DAYS,
    ConsentSource,
    Outcome,
    Purpose,
    SkipReason,
)
from mercato.schemas import ResponseModel, StrictModel

MAX_CHANGES = len(Purpose) * 20

# --- consent --------------------------------------------------------------------------------


class ConsentChangeIn(StrictModel):
    purpose: Purpose
    granted: bool
    wording_version: str = Field(
        min_length=1, max_length=40, description="The version of the wording the customer saw"
    )
    channel_id: int | None = Field(
        default=None, description="Decide for this channel only; omitted: every channel"
    )


class ConsentChangesIn(StrictModel):
    changes: list[ConsentChangeIn] = Field(min_length=1, max_length=MAX_CHANGES)


class StaffConsentChangesIn(StrictModel):
    changes: list[ConsentChangeIn] = Field(min_length=1, max_length=MAX_CHANGES)
    source: Literal["staff", "import"] = Field(
        default="staff",
        description="staff (told by the customer, e.g. on the phone) or import",
    )
    note: str | None = Field(default=None, max_length=2000)


class ConsentStateOut(ResponseModel):
    purpose: Purpose
    channel_id: int | None
    granted: bool
    source: ConsentSource | None
    wording_version: str | None
    recorded_at: datetime | None = Field(description="null: never asked (not granted)")


class ConsentsOut(ResponseModel):
    customer_id: int
    consents: list[ConsentStateOut]


class ConsentRecordOut(ResponseModel):
    id: int
    customer_id: int
    purpose: Purpose
    channel_id: int | None
    granted: bool
    source: ConsentSource
    source_channel_id: int | None
    staff_user_id: int | None
    wording_version: str
    note: str | None
    recorded_at: datetime


# --- rules ----------------------------------------------------------------------------------


class RuleIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    category_id: int | None = Field(default=None, description="Or category_code")
    category_code: str | None = Field(default=None, max_length=100)
    min_purchases: int = Field(
        ge=1, le=MAX_MIN_PURCHASES, description="Orders with a product of the category"
    )
    window_days: int = Field(
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="Look back this many days; also the period in which a customer gets at "
        "most one offer from the rule",
    )
    template_promotion_id: int = Field(description="An active promotion that requires a code")
    valid_days: int = Field(default=30, ge=1, le=MAX_VALID_DAYS, description="Code validity")
    active: bool = True


class RulePatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category_id: int | None = None
    category_code: str | None = Field(default=None, max_length=100)
    min_purchases: int | None = Field(default=None, ge=1, le=MAX_MIN_PURCHASES)
    window_days: int | None = Field(default=None, ge=1, le=MAX_WINDOW_DAYS)
    template_promotion_id: int | None = None
    valid_days: int | None = Field(default=None, ge=1, le=MAX_VALID_DAYS)
    active: bool | None = None


class RuleOut(ResponseModel):
    id: int
    name: str
    active: bool
    category_id: int
    min_purchases: int
    window_days: int
    template_promotion_id: int
    valid_days: int
    purpose: Purpose = Purpose.MARKETING_EMAIL
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None


class CandidateOut(ResponseModel):
    customer_id: int
    purchases: int = Field(description="Qualifying orders in the window")
    channel_ids: list[int] = Field(description="The channels she bought them in")
    outcome: Outcome
    reason: SkipReason | None
    detail: str | None = None


class PreviewOut(ResponseModel):
    rule_id: int
    window_from: datetime
    ready: bool = Field(description="False: a run would be refused (see problems)")
    problems: list[str]
    candidates: list[CandidateOut]


class RunResultOut(ResponseModel):
    customer_id: int
    purchases: int
    channel_ids: list[int]
    outcome: Outcome
    reason: SkipReason | None
    detail: str | None
    code_id: int | None = Field(description="The personal code issued (the code is in the email)")
    message_id: int | None


class RunOut(ResponseModel):
    id: int
    rule_id: int
    actor_type: str
    actor_id: str | None
    window_from: datetime
    started_at: datetime
    matched: int
    issued: int
    skipped: int
    failed: int
    results: list[RunResultOut] = Field(default_factory=list)


# --- messages -------------------------------------------------------------------------------


class MessageOut(ResponseModel):
    id: int
    customer_id: int | None = Field(description="null for a service message to a guest")
    channel: MessageChannel
    recipient: str | None = Field(description="null for roles without customers:pii")
    purpose: Purpose | None
    template: str
    locale: str
    subject: str
    body_text: str | None = Field(description="null for roles without customers:pii")
    body_html: str | None
    status: MessageStatus
    attempts: int
    last_error: str | None
    delivery_id: str | None
    reference_type: str | None
    reference_id: str | None
    order_id: int | None = Field(description="the order the message is about")
    resent_from_id: int | None = Field(description="the message this one repeats (a resend)")
    created_at: datetime
    sent_at: datetime | None


class ResendIn(StrictModel):
    to_current_email: bool = Field(
        default=False,
        description="send the copy to the order's current email instead of the original address",
    )
