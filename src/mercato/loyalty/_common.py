"""What the loyalty modules share: the system actor, the ledger's entry kinds, order points'
states."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.customers import service as customers

SYSTEM = Principal.system("loyalty")
TENDER_METHOD = "loyalty_points"


class Kind(StrEnum):
    EARN = "earn"  # points of a fulfilled order (or another purchase)
    REDEEM = "redeem"  # spent as a tender
    REFUND = "refund"  # a points tender refunded: the points come back
    REVERSE = "reverse"  # an order's points taken back after a return
    EXPIRE = "expire"
    ADJUST = "adjust"  # staff correction or goodwill


class OrderPointsStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    CANCELLED = "cancelled"


def _require_customer(session: Session, customer_id: int) -> None:
    customers.get_customer(session, customer_id)
