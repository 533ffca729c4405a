from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedJSON, EncryptedString
from mercato.db import Base, BigIntPK, UTCDateTime, utcnow


class BackgroundJob(Base):
    """Long work a staff user started from the back office (an import, an export, a bulk
    action): its progress while it runs, then its report and any file it made.

    The report and the file may hold personal data (a privacy export): both are encrypted,
    and the file is deleted a day after the work ends (``expire_files``)."""

    __tablename__ = "background_jobs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(EncryptedString())
    actor_id: Mapped[int] = mapped_column(BigInteger, index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())
    file_name: Mapped[str | None] = mapped_column(String(200))
    file_type: Mapped[str | None] = mapped_column(String(100))
    file_content: Mapped[str | None] = mapped_column(EncryptedString())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
