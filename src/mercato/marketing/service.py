"""Marketing use cases: consent per purpose and channel, and offer rules (story 3).

Consent is an append-only history; the current state of (customer, purpose, channel) is
its latest record. A decision for one channel overrides the all-channel decision for that
channel only. Every marketing action asks ``has_consent`` (or its bulk form
``consenting_customers``) first; nothing is sent on a purpose the customer never granted.

An offer rule selects customers from the unified order history (every channel), skips
those without consent and issues each a one-time personal code through the promotions
service, with a localised email queued in the notifier's outbox. A customer gets at most
one offer per rule per rule period: the claim is one conditional upsert, so concurrent
runs cannot both issue her a code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.catalog import service as catalog
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.db import get_or_404, locked_row, utcnow
from mercato.errors import NotFound, Problem, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.marketing import notifier, templates
from mercato.marketing.event_types import ConsentChanged, OfferIssued
from mercato.marketing.models import ConsentRecord, OfferClaim, OfferRule, RuleRun, RunResult
from mercato.orders import service as orders
from mercato.orders.state import OrderStatus
from mercato.pagination import Page, decode_cursor, page_of
from mercato.promotions import engine as promotion_engine
from mercato.promotions import service as promotions
from mercato.promotions.schemas import PromotionStatus

_CHUNK = 500
ORDER_SCAN_PAGE = 500


class Purpose(StrEnum):
    MARKETING_EMAIL = "marketing_email"
    MARKETING_SMS = "marketing_sms"
    MARKETING_PUSH = "marketing_push"
    PERSONALISATION = "personalisation"
    ANALYTICS = "analytics"


class ConsentSource(StrEnum):
    CHANNEL = "channel"  # the shopper, through a sales channel
    STAFF = "staff"
    IMPORT = "import"


# Orders that count as purchases: placed and not cancelled (or never paid).
NOT_PURCHASES = frozenset(
    {OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED}
)
PURCHASE_STATUSES = frozenset(s.value for s in OrderStatus if s not in NOT_PURCHASES)


def purpose_of(value: Purpose | str) -> Purpose:
    """The purpose, or ValueError for a purpose Mercato does not know."""
    try:
        return Purpose(value)
    except ValueError:
        known = ", ".join(p.value for p in Purpose)
        raise ValueError(f"unknown purpose {value!r}; one of {known}") from None


# --- consent: reading -----------------------------------------------------------------------


def _latest_records(
    session: Session,
    customer_ids: Sequence[int],
    purposes: Sequence[Purpose],
    channel_id: int | None,
    *,
    every_channel: bool = False,
) -> list[ConsentRecord]:
    """The latest record of each (customer, purpose, channel) asked for, in one query."""
    scope = (
        ConsentRecord.channel_id.is_(None)
        if channel_id is None
        else or_(ConsentRecord.channel_id.is_(None), ConsentRecord.channel_id == channel_id)
    )
    found: list[ConsentRecord] = []
    for start in range(0, len(customer_ids), _CHUNK):
        chunk = customer_ids[start : start + _CHUNK]
        latest = (
            select(func.max(ConsentRecord.id))
            .where(
                ConsentRecord.customer_id.in_(chunk),
                ConsentRecord.purpose.in_([p.value for p in purposes]),
            )
            .group_by(ConsentRecord.customer_id, ConsentRecord.purpose, ConsentRecord.channel_id)
        )
        if not every_channel:
            latest = latest.where(scope)
        found.extend(
            session.scalars(
                select(ConsentRecord).where(ConsentRecord.id.in_(latest)).order_by(ConsentRecord.id)
            )
        )
    return found


def consenting_customers(
    session: Session,
    customer_ids: Iterable[int],
    purpose: Purpose | str,
    channel_id: int | None = None,
) -> set[int]:
    """Which of ``customer_ids`` consent to ``purpose`` (in ``channel_id``, when given).

    A decision recorded for the channel wins over the all-channel decision; without a
    channel only the all-channel decision counts. Never asked means no.
    """
    wanted = purpose_of(purpose)
    ids = sorted(set(customer_ids))
    decisions: dict[int, tuple[bool, bool]] = {}  # customer -> (channel-specific, granted)
    for record in _latest_records(session, ids, [wanted], channel_id):
        specific = record.channel_id is not None
        held = decisions.get(record.customer_id)
        if held is None or (specific and not held[0]):
            decisions[record.customer_id] = (specific, record.granted)
    return {customer_id for customer_id, (_, granted) in decisions.items() if granted}


def has_consent(
    session: Session, customer_id: int, purpose: Purpose | str, channel_id: int | None = None
) -> bool:
    """True when the customer currently consents to ``purpose`` (in ``channel_id``)."""
    return customer_id in consenting_customers(session, [customer_id], purpose, channel_id)


@dataclass(frozen=True)
class ConsentState:
    """The current decision for one purpose and channel (``channel_id`` None: all)."""

    purpose: Purpose
    channel_id: int | None
    granted: bool
    source: ConsentSource | None = None
    wording_version: str | None = None
    recorded_at: datetime | None = None


def current_consents(session: Session, customer_id: int) -> list[ConsentState]:
    """Every purpose's all-channel state (not granted when never asked) and every
    channel-specific decision, purposes in their declared order."""
    order = {p: i for i, p in enumerate(Purpose)}
    states: dict[tuple[Purpose, int | None], ConsentState] = {
        (p, None): ConsentState(p, None, False) for p in Purpose
    }
    for r in _latest_records(session, [customer_id], list(Purpose), None, every_channel=True):
        purpose = Purpose(r.purpose)
        states[(purpose, r.channel_id)] = ConsentState(
            purpose,
            r.channel_id,
            r.granted,
            ConsentSource(r.source),
            r.wording_version,
            r.recorded_at,
        )
    return sorted(
        states.values(),
        key=lambda s: (order[s.purpose], s.channel_id is not None, s.channel_id or 0),
    )


def consent_history(
    session: Session,
    customer_id: int,
    *,
    purpose: Purpose | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ConsentRecord]:
    """The customer's consent records, newest first."""
    query = (
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(ConsentRecord.id.desc())
    )
    if purpose is not None:
        query = query.where(ConsentRecord.purpose == purpose.value)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(ConsentRecord.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)


# --- consent: changing ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentChange:
    purpose: Purpose
    granted: bool
    wording_version: str
    channel_id: int | None = None


def _check_changes(session: Session, changes: Sequence[ConsentChange]) -> None:
    if not changes:
        raise ValidationProblem.field("body.changes", "at least one change")
    seen: set[tuple[Purpose, int | None]] = set()
    known_channels: set[int] = set()
    for i, change in enumerate(changes):
        where = f"body.changes[{i}]"
        key = (change.purpose, change.channel_id)
        if key in seen:
            raise ValidationProblem.field(where, "this purpose and channel are listed twice")
        seen.add(key)
        if not change.wording_version.strip():
            raise ValidationProblem.field(f"{where}.wording_version", "must not be empty")
        if change.channel_id is not None and change.channel_id not in known_channels:
            try:
                channels.get_channel(session, change.channel_id)
            except NotFound:
                raise ValidationProblem.field(
                    f"{where}.channel_id", f"unknown channel {change.channel_id}"
                ) from None
            known_channels.add(change.channel_id)


def record_consents(
    session: Session,
    actor: Principal,
    customer_id: int,
    changes: Sequence[ConsentChange],
    *,
    source: ConsentSource,
    source_channel_id: int | None = None,
    note: str | None = None,
) -> list[ConsentRecord]:
    """Append the decisions that change something; the records written, in order.

    A decision equal to the current one (same answer, same wording) writes nothing, so a
    retried request does not grow the history. All changes are checked before any is
    written: one bad change rejects the request.
    """
    customers.get_customer(session, customer_id)
    _check_changes(session, changes)
    if source is ConsentSource.CHANNEL and source_channel_id is None:
        raise ValueError("a consent given through a channel names the channel")
    current = {
        (Purpose(r.purpose), r.channel_id): r
        for r in _latest_records(session, [customer_id], list(Purpose), None, every_channel=True)
    }
    now = utcnow()
    written: list[ConsentRecord] = []
    for change in changes:
        before = current.get((change.purpose, change.channel_id))
        wording = change.wording_version.strip()
        if before is not None and (before.granted, before.wording_version) == (
            change.granted,
            wording,
        ):
            continue
        record = ConsentRecord(
            customer_id=customer_id,
            purpose=change.purpose.value,
            channel_id=change.channel_id,
            granted=change.granted,
            source=source.value,
            source_channel_id=source_channel_id,
            staff_user_id=actor.id if actor.kind == "staff" else None,
            wording_version=wording,
            note=note,
            recorded_at=now,
        )
        session.add(record)
        written.append(record)
    if not written:
        return []
    session.flush()
    for record in written:
        _after_change(
            session, actor, record, current.get((Purpose(record.purpose), record.channel_id))
        )
    return written


def _after_change(
    session: Session, actor: Principal, record: ConsentRecord, before: ConsentRecord | None
) -> None:
    previous = None if before is None else before.granted
    event = ConsentChanged(
        consent_id=record.id,
        customer_id=record.customer_id,
        purpose=record.purpose,
        channel_id=record.channel_id,
        granted=record.granted,
        previous_granted=previous,
        source=record.source,
        source_channel_id=record.source_channel_id,
        wording_version=record.wording_version,
        recorded_at=record.recorded_at,
    )
    data = event.data()
    publish(session, event)
    if actor.kind != "customer":
        audit(session, actor, "consent.changed", "customer", record.customer_id, data, record.note)
    if not record.granted and record.channel_id is None:
        # Messages waiting for delivery must not go out once the customer said no.
        notifier.cancel_queued(
            session, record.customer_id, record.purpose, "consent withdrawn before sending"
        )


# --- offer rules ----------------------------------------------------------------------------

MAX_WINDOW_DAYS = 3650
MAX_MIN_PURCHASES = 1000
MAX_VALID_DAYS = 366


@dataclass(frozen=True)
class RuleDraft:
    name: str
    category_id: int
    min_purchases: int
    window_days: int
    template_promotion_id: int
    valid_days: int
    active: bool = True


def resolve_category(
    session: Session, category_id: int | None, category_code: str | None, where: str = "body"
) -> int:
    """The category id named by id or by code (exactly one of them)."""
    if (category_id is None) == (category_code is None):
        raise ValidationProblem.field(
            f"{where}.category_id", "give either category_id or category_code"
        )
    if category_code is not None:
        category = catalog.category_by_code(session, category_code)
        if category is None:
            raise ValidationProblem.field(
                f"{where}.category_code", f"unknown category {category_code!r}"
            )
        return int(category.id)
    assert category_id is not None
    catalog.require_categories(session, [category_id], field=f"{where}.category_id")
    return category_id


def _check_template(session: Session, promotion_id: int, field_name: str) -> None:
    try:
        template = promotions.get_promotion(session, promotion_id)
    except NotFound:
        raise ValidationProblem.field(field_name, f"unknown promotion {promotion_id}") from None
    if not template.requires_code:
        raise ValidationProblem.field(
            field_name, "the promotion must require a code: offers are personal codes"
        )
    if template.status == PromotionStatus.ARCHIVED.value:
        raise ValidationProblem.field(field_name, f"promotion {promotion_id} is archived")


def _check_numbers(values: Mapping[str, Any]) -> None:
    limits = {
        "min_purchases": MAX_MIN_PURCHASES,
        "window_days": MAX_WINDOW_DAYS,
        "valid_days": MAX_VALID_DAYS,
    }
    for name, maximum in limits.items():
        value = values.get(name)
        if value is not None and not 1 <= value <= maximum:
            raise ValidationProblem.field(f"body.{name}", f"1 to {maximum}")


def rule_snapshot(rule: OfferRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "active": rule.active,
        "category_id": rule.category_id,
        "min_purchases": rule.min_purchases,
        "window_days": rule.window_days,
        "template_promotion_id": rule.template_promotion_id,
        "valid_days": rule.valid_days,
    }


def create_rule(session: Session, actor: Principal, draft: RuleDraft) -> OfferRule:
    _check_numbers(vars(draft))
    _check_template(session, draft.template_promotion_id, "body.template_promotion_id")
    now = utcnow()
    rule = OfferRule(
        name=draft.name,
        active=draft.active,
        category_id=draft.category_id,
        min_purchases=draft.min_purchases,
        window_days=draft.window_days,
        template_promotion_id=draft.template_promotion_id,
        valid_days=draft.valid_days,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    audit(session, actor, "marketing_rule.created", "marketing_rule", rule.id, rule_snapshot(rule))
    return rule


RULE_FIELDS = frozenset(
    {
        "name",
        "active",
        "category_id",
        "min_purchases",
        "window_days",
        "template_promotion_id",
        "valid_days",
    }
)


def update_rule(
    session: Session, actor: Principal, rule_id: int, changes: Mapping[str, Any]
) -> OfferRule:
    """Change the given fields (names from ``RULE_FIELDS``, none of them None)."""
    unknown = set(changes) - RULE_FIELDS
    if unknown:
        raise ValueError(f"not rule fields: {sorted(unknown)}")
    for name, value in changes.items():
        if value is None:
            raise ValidationProblem.field(f"body.{name}", "must not be null")
    rule = _locked_rule(session, rule_id)
    _check_numbers(changes)
    if "template_promotion_id" in changes:
        _check_template(session, changes["template_promotion_id"], "body.template_promotion_id")
    before = rule_snapshot(rule)
    for name, value in changes.items():
        setattr(rule, name, value)
    after = rule_snapshot(rule)
    diff = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if diff:
        rule.updated_at = utcnow()
        audit(session, actor, "marketing_rule.updated", "marketing_rule", rule.id, diff)
    return rule


def get_rule(session: Session, rule_id: int) -> OfferRule:
    return get_or_404(session, OfferRule, rule_id, f"marketing rule {rule_id}", fresh=True)


def _locked_rule(session: Session, rule_id: int) -> OfferRule:
    """The rule, locked until commit (PostgreSQL) so edits and runs of it take turns."""
    return locked_row(session, OfferRule, rule_id, f"marketing rule {rule_id}")


def list_rules(
    session: Session, *, active: bool | None = None, cursor: str | None = None, limit: int = 50
) -> Page[OfferRule]:
    query = select(OfferRule).order_by(OfferRule.id.desc())
    if active is not None:
        query = query.where(OfferRule.active == active)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(OfferRule.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)


# --- selecting customers from the order history ---------------------------------------------


@dataclass
class Purchases:
    """A customer's qualifying orders within a rule's window."""

    customer_id: int
    orders: int = 0
    channel_ids: set[int] = field(default_factory=set)
    # Of her latest qualifying order: what the offer email is worded and priced in.
    latest_at: datetime | None = None
    currency: str | None = None
    locale: str | None = None

    def add(self, channel_id: int, at: datetime, currency: str, locale: str | None) -> None:
        self.orders += 1
        self.channel_ids.add(channel_id)
        if self.latest_at is None or at > self.latest_at:
            self.latest_at, self.currency, self.locale = at, currency, locale


class _CategoryMatcher:
    """Whether a variant's product sits in a category or below it (catalog lookups cached)."""

    def __init__(self, session: Session, category_id: int) -> None:
        self.session = session
        self.category_id = category_id
        self.known: dict[int, bool] = {}

    def learn(self, variant_ids: Iterable[int]) -> None:
        missing = [v for v in set(variant_ids) if v not in self.known]
        if not missing:
            return
        infos = catalog.variant_infos(self.session, missing)
        for variant_id in missing:
            info = infos.get(variant_id)
            self.known[variant_id] = info is not None and self.category_id in info.category_ids

    def __call__(self, variant_id: int) -> bool:
        return self.known.get(variant_id, False)


def purchases_in_category(
    session: Session, category_id: int, since: datetime
) -> dict[int, Purchases]:
    """Per customer, the orders since ``since`` in any channel that were placed (and not
    cancelled or unpaid) with at least one line of a product in the category or below."""
    matcher = _CategoryMatcher(session, category_id)
    found: dict[int, Purchases] = {}
    cursor: str | None = None
    while True:
        page = orders.search(
            session, orders.OrderFilter(placed_from=since), cursor, ORDER_SCAN_PAGE
        )
        counted = [
            o for o in page.items if o.customer_id is not None and o.status in PURCHASE_STATUSES
        ]
        lines = {o.id: orders.order_lines(session, o.id) for o in counted}
        matcher.learn(line.variant_id for ls in lines.values() for line in ls)
        for order in counted:
            bought = any(
                matcher(x.variant_id) and x.quantity > x.cancelled_quantity for x in lines[order.id]
            )
            if bought and order.customer_id is not None:
                entry = found.setdefault(order.customer_id, Purchases(order.customer_id))
                at = order.placed_at or order.created_at
                entry.add(order.channel_id, at, order.currency, order.locale)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


# --- previews and runs ----------------------------------------------------------------------


class Outcome(StrEnum):
    ISSUE = "issue"  # preview: would be issued
    ISSUED = "issued"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    NO_CONSENT = "no_consent"
    ALREADY_OFFERED = "already_offered"
    NO_EMAIL = "no_email"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    ERROR = "error"


@dataclass(frozen=True)
class Candidate:
    customer_id: int
    purchases: int
    channel_ids: list[int]
    outcome: Outcome
    reason: SkipReason | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Preview:
    rule_id: int
    window_from: datetime
    ready: bool
    problems: list[str]
    candidates: list[Candidate]


def _template_problems(session: Session, rule: OfferRule, now: datetime) -> list[str]:
    problems = [] if rule.active else [f"rule {rule.id} is not active"]
    try:
        template = promotions.get_promotion(session, rule.template_promotion_id)
    except NotFound:
        return [*problems, f"promotion {rule.template_promotion_id} no longer exists"]
    if template.status != PromotionStatus.ACTIVE.value:
        problems.append(f"promotion {template.id} is {template.status}, not active")
    if template.ends_at is not None and template.ends_at <= now:
        problems.append(f"promotion {template.id} has ended")
    if not template.requires_code:
        problems.append(f"promotion {template.id} applies without a code")
    return problems


def _matching(session: Session, rule: OfferRule, since: datetime) -> list[Purchases]:
    bought = purchases_in_category(session, rule.category_id, since)
    return sorted(
        (p for p in bought.values() if p.orders >= rule.min_purchases),
        key=lambda p: p.customer_id,
    )


def _recently_offered(
    session: Session, rule_id: int, customer_ids: Sequence[int], cutoff: datetime
) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(customer_ids), _CHUNK):
        found.update(
            session.scalars(
                select(OfferClaim.customer_id).where(
                    OfferClaim.rule_id == rule_id,
                    OfferClaim.customer_id.in_(customer_ids[start : start + _CHUNK]),
                    OfferClaim.issued_at > cutoff,
                )
            )
        )
    return found


def _skip_reason(
    session: Session, p: Purchases, consented: set[int], offered: set[int]
) -> SkipReason | None:
    if p.customer_id not in consented:
        return SkipReason.NO_CONSENT
    if p.customer_id in offered:
        return SkipReason.ALREADY_OFFERED
    try:
        customer = customers.get_customer(session, p.customer_id)
    except NotFound:
        return SkipReason.CUSTOMER_NOT_FOUND
    return None if customer.email else SkipReason.NO_EMAIL


def preview_rule(session: Session, rule_id: int, now: datetime | None = None) -> Preview:
    """Who a run would offer a code now, and why the others would be skipped. Writes nothing."""
    now = now or utcnow()
    rule = get_rule(session, rule_id)
    since = now - timedelta(days=rule.window_days)
    matching = _matching(session, rule, since)
    ids = [p.customer_id for p in matching]
    consented = consenting_customers(session, ids, Purpose.MARKETING_EMAIL)
    offered = _recently_offered(session, rule.id, ids, since)
    candidates = []
    for p in matching:
        reason = _skip_reason(session, p, consented, offered)
        candidates.append(
            Candidate(
                p.customer_id,
                p.orders,
                sorted(p.channel_ids),
                Outcome.SKIPPED if reason else Outcome.ISSUE,
                reason,
            )
        )
    problems = _template_problems(session, rule, now)
    return Preview(rule.id, since, not problems, problems, candidates)


@dataclass(frozen=True)
class _Offer:
    """The template promotion's discount, as the offer email describes it."""

    percent: Decimal | None = None
    amounts: Mapping[str, Decimal] | None = None


def _offer_of(session: Session, promotion_id: int) -> _Offer:
    action = promotions.action_from_json(promotions.get_promotion(session, promotion_id).action)
    if isinstance(action, promotion_engine.PercentOffOrder | promotion_engine.PercentOffItems):
        return _Offer(percent=action.percent)
    if isinstance(action, promotion_engine.AmountOffOrder | promotion_engine.AmountOffItems):
        return _Offer(amounts=action.amounts)
    return _Offer()


def _claim(session: Session, rule: OfferRule, customer_id: int, run_id: int, now: datetime) -> bool:
    """Take the customer's offer slot for this rule: one conditional upsert that succeeds
    only when she had no offer from it within the rule's period."""
    cutoff = now - timedelta(days=rule.window_days)
    maker = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    insert = maker(OfferClaim).values(
        rule_id=rule.id, customer_id=customer_id, issued_at=now, run_id=run_id
    )
    stmt = insert.on_conflict_do_update(
        index_elements=["rule_id", "customer_id"],
        set_={"issued_at": now, "run_id": run_id},
        where=OfferClaim.issued_at <= cutoff,
    ).returning(OfferClaim.customer_id)
    return session.execute(stmt).first() is not None


@dataclass(frozen=True)
class _Issued:
    code_id: int
    message_id: int


def _issue(
    session: Session,
    actor: Principal,
    rule: OfferRule,
    run: RuleRun,
    purchases: Purchases,
    offer: _Offer,
) -> _Issued:
    customer = customers.get_customer(session, purchases.customer_id)
    assert customer.email is not None
    code = promotions.issue_personal_offer(
        session, actor, rule.template_promotion_id, customer.id, rule.valid_days
    )
    row = promotions.code_by_value(session, code)
    currency = purchases.currency
    amount = offer.amounts.get(currency) if offer.amounts and currency else None
    rendered = templates.render_personal_offer(
        customer.locale or purchases.locale,
        templates.OfferDetails(code, row.expires_at, offer.percent, amount, currency),
    )
    message = notifier.queue_message(
        session,
        notifier.NewMessage(
            customer_id=customer.id,
            channel=notifier.MessageChannel.EMAIL,
            recipient=customer.email,
            template=templates.PERSONAL_OFFER,
            locale=rendered.language,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            purpose=Purpose.MARKETING_EMAIL.value,
            reference_type="marketing_rule_run",
            reference_id=str(run.id),
        ),
    )
    publish(
        session,
        OfferIssued(
            rule_id=rule.id,
            run_id=run.id,
            customer_id=customer.id,
            promotion_id=rule.template_promotion_id,
            code_id=row.id,
            expires_at=row.expires_at,
            message_id=message.id,
        ),
    )
    return _Issued(row.id, message.id)


def _run_one(
    session: Session,
    actor: Principal,
    rule: OfferRule,
    run: RuleRun,
    purchases: Purchases,
    offer: _Offer,
    consented: set[int],
    now: datetime,
) -> RunResult:
    result = RunResult(
        run_id=run.id,
        customer_id=purchases.customer_id,
        purchases=purchases.orders,
        channel_ids=sorted(purchases.channel_ids),
        outcome=Outcome.SKIPPED.value,
    )
    reason = _skip_reason(session, purchases, consented, set())
    if reason is not None:
        result.reason = reason.value
        return result
    try:
        # A savepoint per customer: one refused code leaves the others issued.
        with session.begin_nested():
            if not _claim(session, rule, purchases.customer_id, run.id, now):
                result.reason = SkipReason.ALREADY_OFFERED.value
                return result
            issued = _issue(session, actor, rule, run, purchases, offer)
    except Problem as exc:
        result.outcome, result.reason, result.detail = (
            Outcome.FAILED.value,
            SkipReason.ERROR.value,
            exc.detail,
        )
        return result
    result.outcome, result.code_id, result.message_id = (
        Outcome.ISSUED.value,
        issued.code_id,
        issued.message_id,
    )
    return result


def run_rule(
    session: Session, actor: Principal, rule_id: int, now: datetime | None = None
) -> RuleRun:
    """Issue the rule's offer to every matching, consenting customer not offered within the
    rule's period; the run and what it did for each customer are recorded."""
    now = now or utcnow()
    rule = _locked_rule(session, rule_id)
    problems = _template_problems(session, rule, now)
    if problems:
        raise UnprocessableState(
            "; ".join(problems), code="rule-not-runnable", extra={"problems": problems}
        )
    since = now - timedelta(days=rule.window_days)
    run = RuleRun(
        rule_id=rule.id,
        actor_type=actor.kind,
        actor_id=None if actor.id is None else str(actor.id),
        window_from=since,
        started_at=now,
    )
    session.add(run)
    session.flush()
    matching = _matching(session, rule, since)
    consented = consenting_customers(
        session, [p.customer_id for p in matching], Purpose.MARKETING_EMAIL
    )
    offer = _offer_of(session, rule.template_promotion_id)
    results = [_run_one(session, actor, rule, run, p, offer, consented, now) for p in matching]
    session.add_all(results)
    _finish(session, actor, rule, run, results, now)
    return run


def _finish(
    session: Session,
    actor: Principal,
    rule: OfferRule,
    run: RuleRun,
    results: Sequence[RunResult],
    now: datetime,
) -> None:
    outcomes = [r.outcome for r in results]
    run.matched = len(results)
    run.issued = outcomes.count(Outcome.ISSUED.value)
    run.skipped = outcomes.count(Outcome.SKIPPED.value)
    run.failed = outcomes.count(Outcome.FAILED.value)
    rule.last_run_at = now
    session.flush()
    counts = {
        "run_id": run.id,
        "matched": run.matched,
        "issued": run.issued,
        "skipped": run.skipped,
        "failed": run.failed,
    }
    audit(session, actor, "marketing_rule.run", "marketing_rule", rule.id, counts)


def get_run(session: Session, run_id: int) -> RuleRun:
    return get_or_404(session, RuleRun, run_id, f"marketing run {run_id}")


def run_results(session: Session, run_id: int) -> list[RunResult]:
    return list(
        session.scalars(
            select(RunResult).where(RunResult.run_id == run_id).order_by(RunResult.customer_id)
        )
    )


def list_runs(
    session: Session, rule_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[RuleRun]:
    get_rule(session, rule_id)
    query = select(RuleRun).where(RuleRun.rule_id == rule_id).order_by(RuleRun.id.desc())
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(RuleRun.id < after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda r: r.id)
