"""Loyalty: one programme, a points account per customer, its ledger, tiers and expiry.

This module is the domain's public face: callers import it and nothing behind it. The use
cases live beside it:

* :mod:`~mercato.loyalty.config` reads the programme, :mod:`~mercato.loyalty.programme`
  sets it up with its campaigns;
* :mod:`~mercato.loyalty.ledger`: the one primitive that changes a balance (an account
  UPDATE plus a ledger entry), the expiring lots consumed first in first out, and the use
  cases on it: earn, redeem, refund, reverse, adjust, expire;
* :mod:`~mercato.loyalty.tiers`: tiers from the qualifying points of the last 12 months;
* :mod:`~mercato.loyalty.order_points`: an order's points, pending when placed, granted
  once, reversed in proportion on return;
* :mod:`~mercato.loyalty.accounts`: what a customer has, and :func:`verify`, the proof
  that every balance is the sum of its entries and of its lots;
* the arithmetic of points is :mod:`~mercato.loyalty.rules`.
"""

from __future__ import annotations

from mercato.loyalty._common import SYSTEM, TENDER_METHOD, Kind, OrderPointsStatus
from mercato.loyalty.accounts import (
    HISTORY_LENGTH,
    AccountView,
    ExpiringLot,
    Mismatch,
    account_view,
    balance_of,
    entries,
    expiring_lots,
    pending_points,
    redemption_value,
    verify,
)
from mercato.loyalty.config import Config, CurrencyInfo, TierInfo, get_config, require_config
from mercato.loyalty.ledger import (
    ExpiryRun,
    InsufficientPoints,
    Posting,
    adjust,
    check_points,
    earn,
    expire_points,
    redeem,
    refund_points,
)
from mercato.loyalty.ledger import _consume_lots as _consume_lots
from mercato.loyalty.ledger import _ensure_account as _ensure_account
from mercato.loyalty.order_points import (
    ReturnedLine,
    grant_order,
    order_cancelled,
    order_placed,
    order_returned,
)
from mercato.loyalty.programme import configure, create_campaign, list_campaigns, replace_campaign
from mercato.loyalty.tiers import (
    QUALIFYING,
    TIER_WINDOW,
    TIER_WINDOW_MONTHS,
    pricing_groups,
    qualifying_points,
    reevaluate_tiers,
    tier_groups,
    tier_of,
)
from mercato.loyalty.tiers import _evaluate_tier as _evaluate_tier

# Also importable here, outside __all__: _consume_lots, _ensure_account and _evaluate_tier,
# which customer merges (customer_links) use to move lots and re-evaluate tiers.
__all__ = [
    "HISTORY_LENGTH",
    "QUALIFYING",
    "SYSTEM",
    "TENDER_METHOD",
    "TIER_WINDOW",
    "TIER_WINDOW_MONTHS",
    "AccountView",
    "Config",
    "CurrencyInfo",
    "ExpiringLot",
    "ExpiryRun",
    "InsufficientPoints",
    "Kind",
    "Mismatch",
    "OrderPointsStatus",
    "Posting",
    "ReturnedLine",
    "TierInfo",
    "account_view",
    "adjust",
    "balance_of",
    "check_points",
    "configure",
    "create_campaign",
    "earn",
    "entries",
    "expire_points",
    "expiring_lots",
    "get_config",
    "grant_order",
    "list_campaigns",
    "order_cancelled",
    "order_placed",
    "order_returned",
    "pending_points",
    "pricing_groups",
    "qualifying_points",
    "redeem",
    "redemption_value",
    "reevaluate_tiers",
    "refund_points",
    "replace_campaign",
    "require_config",
    "tier_groups",
    "tier_of",
    "verify",
]
