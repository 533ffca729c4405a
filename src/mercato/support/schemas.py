from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from mercato.auth.schemas import EMAIL_PATTERN
from mercato.schemas import ResponseModel, StrictModel
from mercato.support.service import CaseStatus, ContactChannel, Direction, Priority

AttachmentUrl = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")]
Attachments = Annotated[
    list[AttachmentUrl], Field(default_factory=list, max_length=10, description="http(s) URLs")
]
Body = Annotated[str, Field(min_length=1, max_length=20_000)]
Subject = Annotated[str, Field(min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
OrderNumber = Annotated[str, Field(min_length=1, max_length=20)]


# --- requests ------------------------------------------------------------------------------


class StoreMessageIn(StrictModel):
    body: Body
    attachments: Attachments


class StoreCaseIn(StrictModel):
    subject: Subject
    message: StoreMessageIn
    order_id: int | None = Field(default=None, description="One of your orders, by id")
    order_number: OrderNumber | None = Field(default=None, description="...or by number")
    email: str | None = Field(
        default=None,
        pattern=EMAIL_PATTERN,
        max_length=254,
        description="Guests only (no customer token): where the answer goes",
    )

    @model_validator(mode="after")
    def _one_order(self) -> StoreCaseIn:
        if self.order_id is not None and self.order_number is not None:
            raise ValueError("give order_id or order_number, not both")
        return self


class RatingIn(StrictModel):
    satisfaction: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class OrderRefIn(StrictModel):
    order_id: int | None = None
    number: OrderNumber | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OrderRefIn:
        if (self.order_id is None) == (self.number is None):
            raise ValueError("give exactly one of order_id and number")
        return self


class StaffMessageIn(StrictModel):
    body: Body
    direction: Direction = Field(
        description="inbound: logged from the customer (a call, an email); outbound: to the "
        "customer; internal: a note the customer never sees"
    )
    channel: ContactChannel
    attachments: Attachments


class StaffCaseIn(StrictModel):
    customer_id: int | None = None
    email: str | None = Field(
        default=None,
        pattern=EMAIL_PATTERN,
        max_length=254,
        description="A guest's email; linked to the account when a customer has it",
    )
    subject: Subject
    source: ContactChannel = Field(description="The contact channel the case came through")
    channel_id: int | None = Field(default=None, description="The sales channel, if any")
    priority: Priority = Priority.NORMAL
    orders: list[OrderRefIn] = Field(default_factory=list, max_length=20)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    assignee_id: int | None = None
    message: StaffMessageIn | None = None


class CasePatch(StrictModel):
    priority: Priority | None = None
    assignee_id: int | None = Field(default=None, description="null unassigns")
    subject: Subject | None = None
    tags: list[Tag] | None = Field(default=None, max_length=20)


class StatusIn(StrictModel):
    status: CaseStatus
    note: str | None = Field(default=None, max_length=2000, description="Kept in the audit log")


class SlaPolicyIn(StrictModel):
    first_response_minutes: int = Field(ge=1, le=525_600)
    resolution_minutes: int = Field(ge=1, le=525_600)


# --- responses -----------------------------------------------------------------------------


class MessageOut(ResponseModel):
    id: int
    direction: str
    channel: str
    author_type: str
    author_id: int | None
    author_name: str | None
    body: str | None
    attachments: list[str]
    created_at: datetime


class StoreMessageOut(ResponseModel):
    id: int
    direction: str
    channel: str
    author_type: str
    author_name: str | None
    body: str
    attachments: list[str]
    created_at: datetime


class CaseOrderOut(ResponseModel):
    order_id: int
    number: str


class CaseOut(ResponseModel):
    id: int
    number: str
    subject: str | None
    status: str
    priority: str
    source: str
    channel_id: int | None
    customer_id: int | None
    email: str | None
    assignee_id: int | None
    tags: list[str]
    orders: list[CaseOrderOut] = []
    first_response_due_at: datetime
    resolution_due_at: datetime
    first_responded_at: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    sla_breached: bool
    overdue: bool
    paused: bool = Field(description="Waiting on the customer: the SLA clock is stopped")
    last_message_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    satisfaction: int | None
    satisfaction_comment: str | None
    rated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut] = Field(
        default=[], description="The thread (the overview: the last few messages)"
    )


class StoreCaseOut(ResponseModel):
    id: int
    number: str
    subject: str
    status: str
    source: str
    channel_id: int | None
    orders: list[CaseOrderOut] = []
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    can_rate: bool
    satisfaction: int | None
    satisfaction_comment: str | None
    rated_at: datetime | None
    messages: list[StoreMessageOut] = []


class CustomerSummaryOut(ResponseModel):
    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    groups: list[str]
    registered_channel_id: int | None
    created_at: datetime
    order_count: int


class OrderLineBriefOut(ResponseModel):
    sku: str
    name: str
    quantity: int
    total: Decimal


class OrderBriefOut(ResponseModel):
    id: int
    number: str
    channel_id: int
    status: str
    currency: str
    grand_total: Decimal
    placed_at: datetime | None
    created_at: datetime
    lines: list[OrderLineBriefOut]


class OverviewOut(ResponseModel):
    customer: CustomerSummaryOut
    open_cases: list[CaseOut]
    recent_cases: list[CaseOut]
    recent_orders: list[OrderBriefOut]


class SlaPolicyOut(ResponseModel):
    priority: str
    first_response_minutes: int
    resolution_minutes: int
    default: bool


class SatisfactionRowOut(ResponseModel):
    period_start: date
    channel_id: int | None
    source: str
    ratings: int
    score_total: int
    average: Decimal


class SatisfactionOut(ResponseModel):
    """Average satisfaction (1 to 5) of cases rated in [since, until), by period (UTC),
    sales channel and contact channel; counts and totals merge rows exactly."""

    since: datetime
    until: datetime
    period: str
    ratings: int
    average: Decimal | None
    rows: list[SatisfactionRowOut]
