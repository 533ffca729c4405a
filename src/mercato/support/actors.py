"""Who acts on a case: a customer, a guest through a sales channel, staff or the system.

Only staff and system changes are audited; shoppers' changes are in the case's events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.principal import Principal
from mercato.support.models import SupportCase


def customer_actor(customer_id: int, channel_id: int | None) -> Principal:
    return Principal(
        kind="customer", id=customer_id, customer_id=customer_id, channel_id=channel_id
    )


def guest_actor(channel_id: int, channel_code: str) -> Principal:
    return Principal(kind="channel", label=channel_code, channel_id=channel_id)


def is_staff(actor: Principal) -> bool:
    return actor.kind in ("staff", "system")


def audit_case(
    session: Session, actor: Principal, action: str, case: SupportCase, changes: dict[str, Any]
) -> None:
    if is_staff(actor):
        auth_service.audit(session, actor, action, "support_case", case.id, changes)
