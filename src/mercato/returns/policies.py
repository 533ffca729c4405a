"""Return policies: the rules for a channel, a country, both, or everything.

The policy that applies to an order is the most specific stored one (channel and country,
channel, country, then the default) or, with none stored, the built-in default. A return
keeps a copy of its policy: later edits do not change a return already requested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.db import get_or_404, utcnow
from mercato.errors import Conflict, NotFound, ValidationProblem
from mercato.returns.facts import OrderFacts
from mercato.returns.models import ReturnPolicy
from mercato.returns.schemas import PolicyIn, PolicyPatch

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules that apply to one order (a stored policy, or the built-in default)."""

    id: int | None
    scope: str
    channel_id: int | None
    country: str | None
    days_allowed: int
    non_returnable_category_ids: tuple[int, ...]
    accept_store_returns: bool
    restocking_fee_percent: Decimal
    auto_approve: bool

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "channel_id": self.channel_id,
            "country": self.country,
            "days_allowed": self.days_allowed,
            "non_returnable_category_ids": list(self.non_returnable_category_ids),
            "accept_store_returns": self.accept_store_returns,
            "restocking_fee_percent": str(self.restocking_fee_percent),
            "auto_approve": self.auto_approve,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> EffectivePolicy:
        return cls(
            id=data.get("id"),
            scope=str(data["scope"]),
            channel_id=data.get("channel_id"),
            country=data.get("country"),
            days_allowed=int(data["days_allowed"]),
            non_returnable_category_ids=tuple(data.get("non_returnable_category_ids") or ()),
            accept_store_returns=bool(data["accept_store_returns"]),
            restocking_fee_percent=Decimal(str(data["restocking_fee_percent"])),
            auto_approve=bool(data["auto_approve"]),
        )

    @classmethod
    def of(cls, policy: ReturnPolicy) -> EffectivePolicy:
        return cls(
            id=policy.id,
            scope=policy.scope,
            channel_id=policy.channel_id,
            country=policy.country,
            days_allowed=policy.days_allowed,
            non_returnable_category_ids=tuple(policy.non_returnable_category_ids or ()),
            accept_store_returns=policy.accept_store_returns,
            restocking_fee_percent=Decimal(policy.restocking_fee_percent).quantize(Decimal("0.01")),
            auto_approve=policy.auto_approve,
        )


DEFAULT_POLICY = EffectivePolicy(
    id=None,
    scope="default",
    channel_id=None,
    country=None,
    days_allowed=DEFAULT_DAYS,
    non_returnable_category_ids=(),
    accept_store_returns=True,
    restocking_fee_percent=Decimal("0.00"),
    auto_approve=True,
)


def policy_scope(channel_id: int | None, country: str | None) -> str:
    channel = "*" if channel_id is None else str(channel_id)
    return f"channel:{channel}|country:{country or '*'}"


def _check_policy_refs(
    session: Session, channel_id: int | None, category_ids: Sequence[int] | None
) -> None:
    if channel_id is not None:
        try:
            channels.get_channel(session, channel_id)
        except NotFound as exc:
            raise ValidationProblem.field(
                "body.channel_id", f"unknown channel {channel_id}"
            ) from exc
    if category_ids:
        catalog.require_categories(
            session, list(category_ids), field="body.non_returnable_category_ids"
        )


def _policy_changes(policy: ReturnPolicy) -> dict[str, Any]:
    return EffectivePolicy.of(policy).snapshot()


def create_policy(session: Session, actor: Principal, data: PolicyIn) -> ReturnPolicy:
    """A policy for a channel, a country, both or (neither) the default; 409 if one exists."""
    _check_policy_refs(session, data.channel_id, data.non_returnable_category_ids)
    scope = policy_scope(data.channel_id, data.country)
    now = utcnow()
    policy = ReturnPolicy(
        scope=scope,
        channel_id=data.channel_id,
        country=data.country,
        days_allowed=data.days_allowed,
        non_returnable_category_ids=sorted(set(data.non_returnable_category_ids)),
        accept_store_returns=data.accept_store_returns,
        restocking_fee_percent=data.restocking_fee_percent,
        auto_approve=data.auto_approve,
        created_at=now,
        updated_at=now,
    )
    session.add(policy)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a return policy for {scope} exists; change it instead",
            code="return-policy-exists",
        ) from exc
    audit(
        session, actor, "return_policy.created", "return_policy", policy.id, _policy_changes(policy)
    )
    return policy


def update_policy(
    session: Session, actor: Principal, policy_id: int, patch: PolicyPatch
) -> ReturnPolicy:
    policy = get_policy(session, policy_id)
    changes = patch.model_dump(exclude_unset=True)
    for name in ("days_allowed", "accept_store_returns", "restocking_fee_percent", "auto_approve"):
        if name in changes and changes[name] is None:
            raise ValidationProblem.field(f"body.{name}", "may not be null")
    _check_policy_refs(session, None, changes.get("non_returnable_category_ids"))
    if "non_returnable_category_ids" in changes:
        changes["non_returnable_category_ids"] = sorted(
            set(changes["non_returnable_category_ids"] or ())
        )
    for name, value in changes.items():
        setattr(policy, name, value)
    policy.updated_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        "return_policy.updated",
        "return_policy",
        policy.id,
        {k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items()},
    )
    return policy


def delete_policy(session: Session, actor: Principal, policy_id: int) -> None:
    policy = get_policy(session, policy_id)
    audit(
        session, actor, "return_policy.deleted", "return_policy", policy.id, _policy_changes(policy)
    )
    session.delete(policy)
    session.flush()


def get_policy(session: Session, policy_id: int) -> ReturnPolicy:
    return get_or_404(session, ReturnPolicy, policy_id, f"return policy {policy_id}", fresh=True)


def list_policies(session: Session) -> list[ReturnPolicy]:
    return list(session.scalars(select(ReturnPolicy).order_by(ReturnPolicy.id)))


def policy_for(session: Session, channel_id: int | None, country: str | None) -> EffectivePolicy:
    """The most specific policy: channel+country, then channel, then country, then default."""
    scopes = [
        policy_scope(channel_id, country),
        policy_scope(channel_id, None),
        policy_scope(None, country),
        policy_scope(None, None),
    ]
    found = {
        p.scope: p
        for p in session.scalars(select(ReturnPolicy).where(ReturnPolicy.scope.in_(set(scopes))))
    }
    for scope in scopes:
        if scope in found:
            return EffectivePolicy.of(found[scope])
    return DEFAULT_POLICY


def order_country(session: Session, order: OrderFacts) -> str | None:
    """Where the order went (shipping, else billing address), else its channel's country."""
    for address in (order.shipping_address, order.billing_address):
        if address and address.get("country"):
            return str(address["country"]).upper()
    return channels.get_channel(session, order.channel_id).country
