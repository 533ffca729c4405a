from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow


class PrivacyRequest(Base):
    """A data subject request (export or erasure): who asked, for whom, when, what it did.

    The log holds no personal data itself: the subject is a customer id, which after an
    erasure points at an emptied profile.
    """

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_customer", "customer_id", "kind"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(12))  # export | erasure
    customer_id: Mapped[int] = mapped_column(BigId)
    # The pseudonymous reference an erasure left on records that must be kept.
    reference: Mapped[str | None] = mapped_column(String(40), unique=True)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    # Typed by staff (how the person asked): encrypted.
    reason: Mapped[str | None] = mapped_column(EncryptedString())
    # Rows changed per domain (erasure) or entries exported per domain (export).
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
