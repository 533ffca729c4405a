"""The fulfilment settings: the sourcing policy routing uses and how long pickups wait."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import ValidationProblem
from mercato.fulfillment import sourcing
from mercato.fulfillment.models import FulfillmentSettings


def _settings(session: Session) -> FulfillmentSettings:
    row = session.get(FulfillmentSettings, 1)
    if row is None:
        row = FulfillmentSettings(id=1, policy={}, pickup_days=7, updated_at=utcnow())
        session.add(row)
        session.flush()
    return row


def policy(session: Session) -> sourcing.SourcingPolicy:
    row = session.get(FulfillmentSettings, 1)
    values = dict(row.policy) if row is not None else {}
    return sourcing.SourcingPolicy(**values)


def pickup_days(session: Session) -> int:
    row = session.get(FulfillmentSettings, 1)
    return row.pickup_days if row is not None else 7


def set_policy(
    session: Session, actor: Principal, values: dict[str, Any], pickup_days: int | None
) -> FulfillmentSettings:
    try:
        sourcing.SourcingPolicy(**values)
    except (TypeError, ValueError) as exc:
        raise ValidationProblem.field("body.policy", str(exc)) from exc
    row = _settings(session)
    row.policy = dict(values)
    if pickup_days is not None:
        row.pickup_days = pickup_days
    row.updated_at = utcnow()
    audit(
        session,
        actor,
        "fulfillment.policy_set",
        "fulfillment_settings",
        1,
        {"policy": values, "pickup_days": row.pickup_days},
    )
    return row
