"""The loyalty domain's events: every entry of the points ledger, and tier changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mercato.event_types import DomainEvent, json_key


@dataclass(frozen=True, kw_only=True)
class PointsFacts(DomainEvent):
    """What every points ledger event says about its entry."""

    AGGREGATE = "loyalty_account"
    KEY = "customer_id"

    customer_id: int
    entry_id: int
    kind: str
    points: int  # signed: debits are negative
    balance: int  # the account's balance after the entry
    reference_type: str | None
    reference_id: str | None
    order_id: int | None
    channel_id: int | None


@dataclass(frozen=True, kw_only=True)
class PointsEarned(PointsFacts):
    """Points were credited for a purchase; they count towards tiers."""

    TYPE = "loyalty.points_earned"

    # None when the programme's points never expire.
    expires_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class PointsRedeemed(PointsFacts):
    """Points were spent as a tender."""

    TYPE = "loyalty.points_redeemed"


@dataclass(frozen=True, kw_only=True)
class PointsRefunded(PointsFacts):
    """Points spent on a payment that was refunded or voided came back."""

    TYPE = "loyalty.points_refunded"


@dataclass(frozen=True, kw_only=True)
class PointsAdjusted(PointsFacts):
    """Staff corrected a balance or credited points as a goodwill gesture."""

    TYPE = "loyalty.points_adjusted"


@dataclass(frozen=True, kw_only=True)
class PointsReversed(PointsFacts):
    """An order's points were taken back after its goods were returned and refunded."""

    TYPE = "loyalty.points_reversed"


@dataclass(frozen=True, kw_only=True)
class PointsExpired(PointsFacts):
    """Points whose expiry date had come were taken off the balance."""

    TYPE = "loyalty.points_expired"


@dataclass(frozen=True, kw_only=True)
class TierChanged(DomainEvent):
    """A customer moved from one tier to another (``from``/``to`` are tier codes, None for none)."""

    TYPE = "loyalty.tier_changed"
    AGGREGATE = "loyalty_account"
    KEY = "customer_id"

    customer_id: int
    from_tier: str | None = field(metadata=json_key("from"))
    to_tier: str | None = field(metadata=json_key("to"))
    qualifying_points: int
    # The customer group the new and the old tier put the customer in (None for none).
    customer_group: str | None
    previous_customer_group: str | None
