"""Loyalty endpoints: the programme and customers' accounts for staff (``/v1/loyalty``), the
shopper's own points in any channel (``/v1/store/loyalty``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers.deps import CustomerId
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import Unauthorized
from mercato.idempotency import Idempotent, scope_for
from mercato.loyalty import service
from mercato.loyalty.models import Campaign, Entry
from mercato.loyalty.schemas import (
    AccountOut,
    AdjustmentIn,
    CampaignIn,
    CampaignOut,
    CategoryMultiplierOut,
    CurrencyRuleOut,
    EntryOut,
    ExpiringLotOut,
    ExpiringOut,
    ExpiryRunOut,
    MismatchOut,
    NextTierOut,
    ProgrammeIn,
    ProgrammeOut,
    RedemptionOut,
    StaffEntryOut,
    StoreLoyaltyOut,
    TierOut,
    VerifyOut,
)
from mercato.money import quantize
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/loyalty", tags=["loyalty"])
store_api = router("/v1/store", tags=["storefront loyalty"])

Reader = Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CUSTOMERS_WRITE))]
# What a point is worth and how many an order earns are prices; campaigns are promotions.
ProgrammeWriter = Annotated[Principal, Depends(require(Permission.PRICING_WRITE))]
CampaignWriter = Annotated[Principal, Depends(require(Permission.PROMOTIONS_WRITE))]


def _tier_out(tier: service.TierInfo | None) -> TierOut | None:
    return None if tier is None else TierOut.model_validate(tier)


def programme_out(session: Session, config: service.Config) -> ProgrammeOut:
    return ProgrammeOut(
        name=config.name,
        active=config.active,
        expiry_months=config.expiry_months,
        expiring_soon_days=config.expiring_soon_days,
        tier_window=service.TIER_WINDOW,
        currencies=[CurrencyRuleOut.model_validate(c) for c in config.currencies.values()],
        category_multipliers=[
            CategoryMultiplierOut(category_id=c, multiplier=m)
            for c, m in sorted(config.multipliers.items())
        ],
        tiers=[TierOut.model_validate(t) for t in config.tiers],
        campaigns=[campaign_out(c) for c in service.list_campaigns(session)],
    )


def campaign_out(campaign: Campaign) -> CampaignOut:
    return CampaignOut.model_validate(campaign)


def account_out(view: service.AccountView) -> AccountOut:
    return AccountOut(**_account_fields(view))


def _account_fields(view: service.AccountView) -> dict[str, object]:
    nxt = view.next_tier
    return {
        "customer_id": view.customer_id,
        "balance": view.balance,
        "pending": view.pending,
        "tier": _tier_out(view.tier),
        "qualifying_points": view.qualifying_points,
        "next_tier": None
        if nxt is None
        else NextTierOut(
            code=nxt.code,
            name=nxt.name,
            threshold=nxt.threshold,
            points_needed=max(0, nxt.threshold - view.qualifying_points),
        ),
        "expiring_soon": ExpiringOut(
            days=view.expiring_days,
            points=view.expiring_points,
            lots=[ExpiringLotOut(expires_at=x.expires_at, points=x.points) for x in view.expiring],
        ),
    }


# --- the programme ---------------------------------------------------------------------------


@api.get("/programme", response_model=ProgrammeOut)
def get_programme(session: DbSession, principal: Reader) -> ProgrammeOut:
    return programme_out(session, service.require_config(session))


@api.put("/programme", response_model=ProgrammeOut)
def put_programme(
    body: ProgrammeIn, session: DbSession, principal: ProgrammeWriter
) -> ProgrammeOut:
    """Set earning rates, point values, category multipliers, tiers and expiry (audited)."""
    return programme_out(session, service.configure(session, principal, body))


@api.get("/campaigns", response_model=PageOut[CampaignOut])
def list_campaigns(session: DbSession, principal: Reader) -> PageOut[CampaignOut]:
    return PageOut(items=[campaign_out(c) for c in service.list_campaigns(session)])


@api.post("/campaigns", response_model=CampaignOut, status_code=201)
def create_campaign(
    body: CampaignIn, session: DbSession, principal: CampaignWriter
) -> CampaignOut:
    """Extra points for a while: x2 at weekends, +500 on a first order..."""
    return campaign_out(service.create_campaign(session, principal, body))


@api.put("/campaigns/{campaign_id}", response_model=CampaignOut)
def replace_campaign(
    campaign_id: int, body: CampaignIn, session: DbSession, principal: CampaignWriter
) -> CampaignOut:
    return campaign_out(service.replace_campaign(session, principal, campaign_id, body))


# --- accounts ----------------------------------------------------------------------------------


@api.get("/accounts/{customer_id}", response_model=AccountOut)
def get_account(customer_id: int, session: DbSession, principal: Reader) -> AccountOut:
    return account_out(service.account_view(session, customer_id))


@api.get("/accounts/{customer_id}/ledger", response_model=PageOut[StaffEntryOut])
def get_ledger(
    customer_id: int,
    session: DbSession,
    page: Pagination,
    principal: Reader,
    kind: service.Kind | None = None,
) -> PageOut[StaffEntryOut]:
    service.account_view(session, customer_id)  # 404 for an unknown customer
    cursor, limit = page
    result = service.entries(
        session, customer_id, kind=kind.value if kind else None, cursor=cursor, limit=limit
    )
    items = [StaffEntryOut.model_validate(e) for e in result.items]
    if not principal.has(Permission.CUSTOMERS_PII):
        # What staff typed about an adjustment may quote the customer.
        items = [
            e.model_copy(update={"reason": None}) if e.actor_type == "staff" else e for e in items
        ]
    return PageOut(items=items, next_cursor=result.next_cursor)


@api.post(
    "/accounts/{customer_id}/adjustments",
    response_model=StaffEntryOut,
    status_code=201,
    responses={
        403: {
            "description": "Adding points needs loyalty:grant and stays within the role's "
            "limits per grant and per day (code loyalty-grant-limit, naming the limit)"
        }
    },
)
def post_adjustment(
    customer_id: int,
    body: AdjustmentIn,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Add or remove points by hand, with a reason (audited).

    Points added can be spent like money: this needs ``loyalty:grant`` besides
    ``customers:write``, within the role's limits (support agents 1,000 points per grant
    and 5,000 a day, store managers 10,000 and 50,000, owners and admins no limit). A
    removal never overdraws the balance.
    """

    def run() -> StaffEntryOut:
        entry: Entry = service.adjust(
            session, principal, customer_id, body.points, body.reason, reference=body.reference
        )
        return StaffEntryOut.model_validate(entry)

    payload = {"customer_id": customer_id, **body.model_dump(mode="json")}
    return Idempotent(session, scope_for("loyalty.adjust", principal), key, payload).run(run)


@api.get("/verify", response_model=VerifyOut)
def verify(session: DbSession, principal: Reader) -> VerifyOut:
    """Prove every balance equals the sum of its ledger and of its unexpired lots."""
    bad = service.verify(session)
    return VerifyOut(ok=not bad, mismatches=[MismatchOut.model_validate(m) for m in bad])


@api.post("/expiry-runs", response_model=ExpiryRunOut)
def run_expiry(session: DbSession, principal: Writer) -> ExpiryRunOut:
    """Expire due points now (the hourly job does the same)."""
    run = service.expire_points(session)
    return ExpiryRunOut(accounts=run.accounts, points=run.points)


# --- the shopper -------------------------------------------------------------------------------


@store_api.get("/loyalty", response_model=StoreLoyaltyOut)
def my_loyalty(
    session: DbSession,
    channel: ChannelCtx,
    customer_id: CustomerId,
    history: Annotated[int, Query(ge=0, le=100)] = service.HISTORY_LENGTH,
) -> StoreLoyaltyOut:
    """Balance, pending points, tier, points expiring soon, recent history; and what the
    balance pays for in the channel's currency (the ``loyalty_points`` payment method)."""
    if customer_id is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    view = service.account_view(session, customer_id)
    recent = service.entries(session, customer_id, limit=history).items if history else []
    return StoreLoyaltyOut(
        **_account_fields(view),
        redemption=_redemption(session, channel.default_currency, view.balance),
        history=[EntryOut.model_validate(e) for e in recent],
    )


def _redemption(session: Session, currency: str, balance: int) -> RedemptionOut | None:
    value = service.redemption_value(session, currency)
    if value is None:
        return None
    worth = quantize(value * max(0, balance), currency, rounding="down")
    return RedemptionOut(currency=currency, point_value=value, balance_value=worth)
