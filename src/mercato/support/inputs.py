"""What callers ask of support (drafts, changes, order references) and its validation.

Every check answers with a 422 naming the offending field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.permissions import ROLE_PERMISSIONS, Permission, Role
from mercato.auth.principal import Principal
from mercato.channels import service as channels
from mercato.customers import service as customers
from mercato.customers.models import Customer
from mercato.errors import NotFound, ValidationProblem
from mercato.orders import service as orders
from mercato.orders.models import Order
from mercato.support.actors import is_staff
from mercato.support.vocabulary import MAX_TAGS, ContactChannel, Direction, Priority


@dataclass(frozen=True)
class OrderRef:
    """An order by id or by number; ``field`` names it in a validation problem."""

    order_id: int | None = None
    number: str | None = None
    field: str = "body.order_id"


@dataclass(frozen=True)
class MessageDraft:
    body: str
    direction: Direction
    channel: ContactChannel
    attachments: Sequence[str] = ()


@dataclass(frozen=True)
class CaseDraft:
    subject: str
    source: ContactChannel
    customer_id: int | None = None
    email: str | None = None
    channel_id: int | None = None
    priority: Priority = Priority.NORMAL
    orders: Sequence[OrderRef] = ()
    tags: Sequence[str] = ()
    assignee_id: int | None = None
    message: MessageDraft | None = None


@dataclass(frozen=True)
class CaseChanges:
    """A staff edit; ``unassign`` clears the assignee (``assignee_id`` None keeps it)."""

    priority: Priority | None = None
    assignee_id: int | None = None
    unassign: bool = False
    subject: str | None = None
    tags: Sequence[str] | None = None


def normalise_tags(tags: Iterable[str], field_name: str = "body.tags") -> list[str]:
    found: list[str] = []
    for i, raw in enumerate(tags):
        tag = raw.strip().lower()
        if not tag or len(tag) > 40 or not all(c.isalnum() or c in "-_" for c in tag):
            raise ValidationProblem.field(
                f"{field_name}[{i}]", "1 to 40 letters, digits, '-' or '_'"
            )
        found.append(tag)
    unique = sorted(set(found))
    if len(unique) > MAX_TAGS:
        raise ValidationProblem.field(field_name, f"at most {MAX_TAGS} tags")
    return unique


def check_text(value: str, field_name: str, maximum: int) -> str:
    text = value.strip()
    if not text:
        raise ValidationProblem.field(field_name, "must not be empty")
    if len(text) > maximum:
        raise ValidationProblem.field(field_name, f"at most {maximum} characters")
    return text


def check_attachments(urls: Sequence[str], field_name: str) -> list[str]:
    if len(urls) > 10:
        raise ValidationProblem.field(field_name, "at most 10 attachments")
    for i, url in enumerate(urls):
        if not url.startswith(("https://", "http://")) or len(url) > 2000 or " " in url:
            raise ValidationProblem.field(f"{field_name}[{i}]", "an http(s) URL")
    return list(urls)


def check_message(draft: MessageDraft, prefix: str) -> None:
    check_text(draft.body, f"{prefix}.body", 20_000)
    check_attachments(draft.attachments, f"{prefix}.attachments")


def check_customer(session: Session, customer_id: int, field_name: str) -> Customer:
    try:
        return customers.get_customer(session, customer_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown customer {customer_id}") from exc


def check_channel(session: Session, channel_id: int, field_name: str) -> None:
    try:
        channels.get_channel(session, channel_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown channel {channel_id}") from exc


def check_assignee(session: Session, assignee_id: int, field_name: str) -> None:
    try:
        user = auth_service.get_user(session, assignee_id)
    except NotFound as exc:
        raise ValidationProblem.field(field_name, f"unknown staff user {assignee_id}") from exc
    if not user.active or Permission.SUPPORT_WRITE not in ROLE_PERMISSIONS[Role(user.role)]:
        raise ValidationProblem.field(
            field_name, f"staff user {assignee_id} may not work on support cases"
        )


def _owner_of(order: Order, customer_id: int | None, email: str | None) -> bool:
    if customer_id is not None:
        return order.customer_id == customer_id
    return (
        order.customer_id is None
        and email is not None
        and (order.email or "").strip().lower() == email
    )


def resolve_order(
    session: Session, actor: Principal, ref: OrderRef, customer_id: int | None, email: str | None
) -> Order:
    """The order, if it is the case's customer's; shoppers never learn of others' orders."""
    try:
        if ref.order_id is not None:
            order = orders.get_order(session, ref.order_id)
        elif ref.number:
            order = orders.get_by_number(session, ref.number.strip().upper())
        else:
            raise ValidationProblem.field(ref.field, "an order id or number is required")
    except NotFound as exc:
        raise ValidationProblem.field(ref.field, "unknown order") from exc
    if not _owner_of(order, customer_id, email):
        reason = "the order belongs to another customer" if is_staff(actor) else "unknown order"
        raise ValidationProblem.field(ref.field, reason)
    return order
