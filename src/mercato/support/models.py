from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow


class SupportCase(Base):
    """One support request of a customer (or a guest by email), across every channel.

    A change locks the row first (``SELECT ... FOR UPDATE``; SQLite serialises writers),
    ratings and SLA breaches are conditional UPDATEs: two agents, the customer and the
    breach job can act on one case at once and each sees the others' result.
    """

    __tablename__ = "support_cases"
    __table_args__ = (
        CheckConstraint("satisfaction BETWEEN 1 AND 5", name="satisfaction_range"),
        CheckConstraint("customer_id IS NOT NULL OR email IS NOT NULL", name="customer_or_email"),
        Index("ix_support_cases_customer", "customer_id", "id"),
        Index("ix_support_cases_status_due", "status", "resolution_due_at"),
        Index("ix_support_cases_assignee", "assignee_id", "status"),
        Index("ix_support_cases_rated", "rated_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    customer_id: Mapped[int | None] = mapped_column(BigId)
    # A guest's address; identified customers are reached through their account.
    email: Mapped[str | None] = mapped_column(EncryptedString())
    # What the person wrote about is personal data: encrypted at rest like the thread.
    subject: Mapped[str] = mapped_column(EncryptedString())
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(10))
    # The contact channel it was opened through (app, email, phone...) and the sales channel.
    source: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    assignee_id: Mapped[int | None] = mapped_column(BigId)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    first_response_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while waiting for the customer: the SLA clock stops and resumes on reply.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    satisfaction_comment: Mapped[str | None] = mapped_column(EncryptedString())
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SupportMessage(Base):
    """One entry of a case's thread: inbound, outbound or an internal note. Append-only."""

    __tablename__ = "support_messages"
    __table_args__ = (Index("ix_support_messages_case", "case_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_cases.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(10))  # inbound | outbound | internal
    channel: Mapped[str] = mapped_column(String(20))
    author_type: Mapped[str] = mapped_column(String(10))  # customer | staff | guest | system
    author_id: Mapped[int | None] = mapped_column(BigId)
    author_name: Mapped[str | None] = mapped_column(EncryptedString())
    body: Mapped[str] = mapped_column(EncryptedString())
    attachments: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SupportCaseOrder(Base):
    """An order a case is about (the number is kept: agents read it out on the phone)."""

    __tablename__ = "support_case_orders"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("support_cases.id", ondelete="CASCADE"), primary_key=True
    )
    order_id: Mapped[int] = mapped_column(BigId, primary_key=True, index=True)
    order_number: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlaPolicy(Base):
    """Response and resolution targets per priority; priorities without a row use defaults."""

    __tablename__ = "support_sla_policies"
    __table_args__ = (
        CheckConstraint("first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint(
            "resolution_minutes >= first_response_minutes", name="resolution_after_response"
        ),
    )

    priority: Mapped[str] = mapped_column(String(10), primary_key=True)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
