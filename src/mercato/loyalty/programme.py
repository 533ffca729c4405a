"""Setting up the programme (settings, rates, multipliers, tiers) and its campaigns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.errors import FieldError, NotFound, ValidationProblem
from mercato.loyalty.config import Config, require_config
from mercato.loyalty.models import (
    PROGRAMME_ID,
    Campaign,
    CategoryMultiplier,
    CurrencyRule,
    Programme,
    Tier,
)
from mercato.loyalty.schemas import CampaignIn, ProgrammeIn
from mercato.loyalty.tiers import reevaluate_tiers
from mercato.money import check_precision


def _check_programme(session: Session, body: ProgrammeIn) -> None:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, rule in enumerate(body.currencies):
        at = f"body.currencies[{i}]"
        if rule.currency in seen:
            errors.append(FieldError(f"{at}.currency", "each currency once"))
        seen.add(rule.currency)
        for name in ("earn_amount", "point_value"):
            value = getattr(rule, name)
            try:
                if value is not None:
                    check_precision(value, rule.currency)
            except ValueError as exc:
                errors.append(FieldError(f"{at}.{name}", str(exc)))
    categories = [m.category_id for m in body.category_multipliers]
    for i, category_id in enumerate(categories):
        if categories.index(category_id) != i:
            errors.append(FieldError(f"body.category_multipliers[{i}]", "each category once"))
        elif not _category_exists(session, category_id):
            errors.append(
                FieldError(
                    f"body.category_multipliers[{i}].category_id",
                    f"unknown category {category_id}",
                )
            )
    for name in ("code", "threshold"):
        values = [getattr(t, name) for t in body.tiers]
        for i, value in enumerate(values):
            if values.index(value) != i:
                errors.append(FieldError(f"body.tiers[{i}].{name}", f"each tier {name} once"))
    if errors:
        raise ValidationProblem(errors[0]["reason"], errors=errors)


def _category_exists(session: Session, category_id: int) -> bool:
    try:
        catalog.get_category(session, category_id)
    except NotFound:
        return False
    return True


def configure(
    session: Session, actor: Principal, body: ProgrammeIn, *, now: datetime | None = None
) -> Config:
    """Replace the programme's settings, rates, multipliers and tiers (campaigns stay).

    Tiers are re-evaluated for every account at once, so new thresholds apply today.
    """
    _check_programme(session, body)
    at = now or utcnow()
    values = {
        "name": body.name,
        "active": body.active,
        "expiry_months": body.expiry_months,
        "expiring_soon_days": body.expiring_soon_days,
        "updated_at": at,
    }
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # The upsert locks the programme row first: two edits replace the rules one after the
    # other instead of interleaving their deletes and inserts.
    session.execute(
        maker(Programme)
        .values(id=PROGRAMME_ID, **values)
        .on_conflict_do_update(index_elements=["id"], set_=values)
    )
    for table in (CurrencyRule, CategoryMultiplier, Tier):
        session.execute(delete(table))
    rows: list[Any] = [CurrencyRule(**r.model_dump()) for r in body.currencies]
    rows += [CategoryMultiplier(**m.model_dump()) for m in body.category_multipliers]
    rows += [Tier(**t.model_dump()) for t in body.tiers]
    session.add_all(rows)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.programme_updated",
        "loyalty_programme",
        PROGRAMME_ID,
        body.model_dump(mode="json"),
    )
    config = require_config(session)
    reevaluate_tiers(session, now=at, config=config)
    return config


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.starts_at, Campaign.id)))


def _check_campaign(body: CampaignIn) -> None:
    if body.ends_at <= body.starts_at:
        raise ValidationProblem.field("body.ends_at", "must be after starts_at")
    if body.multiplier == 1 and body.bonus_points == 0:
        raise ValidationProblem.field(
            "body.multiplier", "a campaign needs a multiplier above 1 or bonus points"
        )


def create_campaign(session: Session, actor: Principal, body: CampaignIn) -> Campaign:
    _check_campaign(body)
    campaign = Campaign(**body.model_dump(), created_at=utcnow())
    session.add(campaign)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.campaign_created",
        "loyalty_campaign",
        campaign.id,
        body.model_dump(mode="json"),
    )
    return campaign


def replace_campaign(
    session: Session, actor: Principal, campaign_id: int, body: CampaignIn
) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    _check_campaign(body)
    for name, value in body.model_dump().items():
        setattr(campaign, name, value)
    session.flush()
    audit(
        session,
        actor,
        "loyalty.campaign_updated",
        "loyalty_campaign",
        campaign.id,
        body.model_dump(mode="json"),
    )
    return campaign
