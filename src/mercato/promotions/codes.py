"""Promotion codes: merchant-chosen, generated in bulk, and one-time personal codes.

Codes are unique across all promotions and compared upper-case (:func:`normalise_code`).
Generated and personal codes are drawn with ``secrets`` from a sparse code space, so they
cannot be guessed.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import Conflict, NotFound, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.pagination import Page, decode_cursor, page_of
from mercato.promotions.admin import get_promotion
from mercato.promotions.event_types import PersonalCodeIssued
from mercato.promotions.models import Promotion, PromotionCode
from mercato.promotions.references import require_customer
from mercato.promotions.schemas import PromotionStatus

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: codes are read aloud
PERSONAL_CODE_LENGTH = 12
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{2,63}")
_PREFIX = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,19}")
_LOOKUP_CHUNK = 500


def normalise_code(raw: str) -> str:
    """Codes are compared upper-case without surrounding spaces (``summer10 `` = SUMMER10)."""
    return raw.strip().upper()


def _check_expiry(expires_at: datetime | None, field: str) -> None:
    if expires_at is None:
        return
    if expires_at.utcoffset() is None:
        raise ValidationProblem.field(field, "needs a time zone, e.g. 2025-06-01T00:00:00Z")
    if expires_at <= utcnow():
        raise ValidationProblem.field(field, "must be in the future")


def _require_open(promotion: Promotion) -> None:
    if promotion.status == PromotionStatus.ARCHIVED.value:
        raise UnprocessableState(f"promotion {promotion.id} is archived")


def _taken(session: Session, codes: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(codes), _LOOKUP_CHUNK):
        chunk = codes[start : start + _LOOKUP_CHUNK]
        found.update(
            session.scalars(select(PromotionCode.code).where(PromotionCode.code.in_(chunk)))
        )
    return found


def _fresh_codes(session: Session, count: int, prefix: str, length: int) -> list[str]:
    """``count`` random codes no promotion uses yet (drawn with ``secrets``)."""
    codes: dict[str, None] = {}  # insertion-ordered set
    for _ in range(10):
        new: list[str] = []
        while len(codes) < count:
            code = prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
            if code not in codes:
                codes[code] = None
                new.append(code)
        for code in _taken(session, new):
            del codes[code]
        if len(codes) == count:
            return list(codes)
    raise Conflict("could not draw enough unused codes; use longer codes", code="code-space-full")


def _insert_codes(session: Session, rows: list[dict[str, Any]]) -> None:
    try:
        with session.begin_nested():
            session.execute(insert(PromotionCode), rows)
    except IntegrityError as exc:
        raise Conflict("a code was taken meanwhile; retry", code="duplicate-code") from exc


def _code_row(session: Session, code: str) -> PromotionCode:
    row = session.scalar(
        select(PromotionCode)
        .where(PromotionCode.code == code)
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(f"code {code} not found")
    return row


def code_by_value(session: Session, code: str) -> PromotionCode:
    """The code row for a code as a shopper or staff typed it."""
    return _code_row(session, normalise_code(code))


def _code_values(
    promotion_id: int,
    code: str,
    max_uses: int | None,
    expires_at: datetime | None,
    created_at: datetime,
    **extra: Any,
) -> dict[str, Any]:
    """One new, unused code row (``extra``: its batch or its customer)."""
    return {
        "promotion_id": promotion_id,
        "code": code,
        "max_uses": max_uses,
        "uses": 0,
        "expires_at": expires_at,
        **extra,
        "created_at": created_at,
    }


def _checked_prefix(prefix: str | None, count: int, length: int) -> str:
    head = normalise_code(prefix or "")
    if head and not _PREFIX.fullmatch(head):
        raise ValidationProblem.field(
            "body.prefix", "1 to 20 characters: letters A-Z, digits, '-' or '_'"
        )
    # A sparse code space keeps codes unguessable and collisions rare.
    if len(CODE_ALPHABET) ** length < count * 1_000_000:
        raise ValidationProblem.field("body.length", f"too short for {count} unguessable codes")
    return head


def create_code(
    session: Session,
    actor: Principal,
    promotion_id: int,
    code: str,
    *,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
) -> PromotionCode:
    """A merchant-chosen code (normalised upper-case, unique across all promotions)."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    value = normalise_code(code)
    if not _CODE.fullmatch(value):
        raise ValidationProblem.field(
            "body.code", "3 to 64 characters: letters A-Z, digits, '-' or '_'"
        )
    _check_expiry(expires_at, "body.expires_at")
    if _taken(session, [value]):
        raise Conflict(f"code {value} is already in use", code="duplicate-code")
    _insert_codes(session, [_code_values(promotion_id, value, max_uses, expires_at, utcnow())])
    row = _code_row(session, value)
    audit(
        session,
        actor,
        "promotion_code.created",
        "promotion_code",
        row.id,
        {
            "promotion_id": promotion_id,
            "code": value,
            "max_uses": max_uses,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return row


@dataclass(frozen=True)
class GeneratedCodes:
    batch: str
    codes: list[str]


def generate_codes(
    session: Session,
    actor: Principal,
    promotion_id: int,
    count: int,
    *,
    prefix: str | None = None,
    length: int = 10,
    max_uses: int | None = 1,
    expires_at: datetime | None = None,
) -> GeneratedCodes:
    """``count`` unique random codes, ``prefix`` + ``length`` characters of CODE_ALPHABET."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    head = _checked_prefix(prefix, count, length)
    _check_expiry(expires_at, "body.expires_at")
    batch = str(uuid.uuid4())
    codes = _fresh_codes(session, count, head, length)
    now = utcnow()
    _insert_codes(
        session,
        [_code_values(promotion_id, c, max_uses, expires_at, now, batch=batch) for c in codes],
    )
    audit(
        session,
        actor,
        "promotion_codes.generated",
        "promotion",
        promotion_id,
        {"batch": batch, "count": count, "prefix": head or None, "max_uses": max_uses},
    )
    return GeneratedCodes(batch, codes)


def issue_personal_code(
    session: Session,
    actor: Principal,
    promotion_id: int,
    customer_id: int,
    expires_at: datetime | None,
) -> str:
    """A one-time code only ``customer_id`` can use, once, in any channel."""
    promotion = get_promotion(session, promotion_id)
    _require_open(promotion)
    if not promotion.requires_code:
        raise UnprocessableState(
            f"promotion {promotion_id} applies without a code; personal codes need a "
            "promotion that requires one"
        )
    require_customer(session, customer_id, "body.customer_id")
    _check_expiry(expires_at, "body.expires_at")
    code = _fresh_codes(session, 1, "", PERSONAL_CODE_LENGTH)[0]
    values = _code_values(promotion_id, code, 1, expires_at, utcnow(), customer_id=customer_id)
    _insert_codes(session, [values])
    row = _code_row(session, code)
    event = PersonalCodeIssued(
        promotion_id=promotion_id, code_id=row.id, customer_id=customer_id, expires_at=expires_at
    )
    audit(session, actor, "promotion_code.personal_issued", "promotion_code", row.id, event.data())
    publish(session, event)
    return code


def issue_personal_offer(
    session: Session,
    actor: Principal,
    template_promotion_id: int,
    customer_id: int,
    valid_days: int,
) -> str:
    """A personal code for ``customer_id`` from an active code-only "template" promotion,
    valid for ``valid_days`` (never past the template's own end)."""
    if not 1 <= valid_days <= 366:
        raise ValidationProblem.field("body.valid_days", "1 to 366 days")
    template = get_promotion(session, template_promotion_id)
    if template.status != PromotionStatus.ACTIVE.value:
        raise UnprocessableState(
            f"promotion {template_promotion_id} is {template.status}, not active"
        )
    now = utcnow()
    if template.ends_at is not None and template.ends_at <= now:
        raise UnprocessableState(f"promotion {template_promotion_id} has ended")
    expires_at = now + timedelta(days=valid_days)
    if template.ends_at is not None:
        expires_at = min(expires_at, template.ends_at)
    return issue_personal_code(session, actor, template_promotion_id, customer_id, expires_at)


def get_code(session: Session, promotion_id: int, code_id: int) -> PromotionCode:
    row = session.get(PromotionCode, code_id, populate_existing=True)
    if row is None or row.promotion_id != promotion_id:
        raise NotFound(f"code {code_id} of promotion {promotion_id} not found")
    return row


def list_codes(
    session: Session,
    promotion_id: int,
    *,
    batch: str | None = None,
    customer_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PromotionCode]:
    get_promotion(session, promotion_id)
    query = (
        select(PromotionCode)
        .where(PromotionCode.promotion_id == promotion_id)
        .order_by(PromotionCode.id)
    )
    if batch is not None:
        query = query.where(PromotionCode.batch == batch)
    if customer_id is not None:
        query = query.where(PromotionCode.customer_id == customer_id)
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(PromotionCode.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def disable_code(
    session: Session, actor: Principal, promotion_id: int, code_id: int
) -> PromotionCode:
    """Stop a code from applying (redemptions already reserved keep it)."""
    get_code(session, promotion_id, code_id)
    done = session.execute(
        update(PromotionCode)
        .where(PromotionCode.id == code_id, PromotionCode.disabled_at.is_(None))
        .values(disabled_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if getattr(done, "rowcount", 0):
        audit(
            session,
            actor,
            "promotion_code.disabled",
            "promotion_code",
            code_id,
            {"promotion_id": promotion_id},
        )
    return get_code(session, promotion_id, code_id)
