"""The messages the outbox holds about one order, and staff resending one of them.

A customer who lost an email (the pickup code, the shipping change) calls; staff queue a
new copy of the very message that was sent, to the same address, unless they are asked
to use the order's current email. The copy is a new outbox row (the original keeps its
delivery record), audited, and written in the order's timeline.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mercato import idempotency
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.customers import service as customers
from mercato.errors import Conflict, NotFound, UnprocessableState, ValidationProblem
from mercato.marketing import notifier, templates
from mercato.marketing.models import Message
from mercato.orders import service as orders

MESSAGES_PER_ORDER = 200

# The personal offer's discount code is issued to one customer once: a second copy in clear
# would be a second chance to leak it, and a new code is the offer rule's job.
NEVER_RESENT = frozenset({templates.PERSONAL_OFFER})
# The pickup code is a secret too, but a customer who lost it asks for exactly this message:
# it is resent (by staff with orders:write only) and the order's timeline says so.
# (Fulfilment's template name; marketing does not import fulfilment, which queues through it.)
CARRIES_PICKUP_CODE = frozenset({"ready_for_pickup"})
RESENDABLE = frozenset({notifier.MessageStatus.SENT.value, notifier.MessageStatus.FAILED.value})

OPERATION = "orders.resend_message"


def order_messages(session: Session, principal: Principal, order_id: int) -> list[Message]:
    """The order's messages, newest first, if the principal may read the order."""
    orders.check_visible(session, principal, orders.get_order(session, order_id))
    found = notifier.list_messages(session, order_id=order_id, limit=MESSAGES_PER_ORDER)
    return found.items


def _original(session: Session, message_id: int, order_id: int | None) -> Message:
    message = notifier.get_message(session, message_id)
    if message is None or message.order_id is None:
        raise NotFound(f"message {message_id} not found")
    if order_id is not None and message.order_id != order_id:
        raise NotFound(f"message {message_id} not found")
    return message


def _check_resendable(message: Message) -> None:
    if message.template in NEVER_RESENT or message.purpose is not None:
        # Marketing messages follow consent and their own schedule, never a staff resend.
        raise UnprocessableState(
            "this message carries a secret or needs consent: it cannot be sent again",
            code="message-not-resendable",
        )
    if message.status not in RESENDABLE:
        raise UnprocessableState(
            "this message is still waiting to be sent", code="message-still-queued"
        )


def _current_email(session: Session, order_id: int) -> str:
    order = orders.get_order(session, order_id)
    email = order.email
    if not email and order.customer_id is not None:
        email = customers.get_customer(session, order.customer_id).email
    if not email:
        raise ValidationProblem.field("to_current_email", "the order has no email address")
    return email


def resend(
    session: Session,
    principal: Principal,
    message_id: int,
    key: str | None,
    *,
    order_id: int | None = None,
    to_current_email: bool = False,
) -> Message:
    """Queue a new copy of a sent or failed message about an order, to the same recipient
    (or, when asked, to the order's current email). Once per idempotency key: a repeated
    request answers the copy queued the first time."""
    principal.require(Permission.ORDERS_WRITE)
    original = _original(session, message_id, order_id)
    assert original.order_id is not None
    orders.check_visible(session, principal, orders.get_order(session, original.order_id))
    _check_resendable(original)
    scope = idempotency.scope_for(OPERATION, principal)
    checked = idempotency.check_key(key)
    fingerprint = idempotency.request_fingerprint(
        {"message_id": message_id, "to_current_email": to_current_email}
    )
    if checked is not None:
        stored = idempotency.lookup(session, scope, checked, fingerprint)
        if stored is not None:
            return _replayed(session, stored.response)
        if not idempotency.try_claim(session, scope, checked, fingerprint):
            raise Conflict(
                "a request with this Idempotency-Key is in progress; retry it",
                code="idempotency-key-in-use",
            )
    recipient = (
        _current_email(session, original.order_id) if to_current_email else original.recipient
    )
    copy = notifier.queue_message(
        session,
        notifier.NewMessage(
            customer_id=original.customer_id,
            channel=notifier.MessageChannel(original.channel),
            recipient=recipient,
            template=original.template,
            locale=original.locale,
            subject=original.subject,
            body_text=original.body_text,
            body_html=original.body_html,
            purpose=None,
            reference_type=original.reference_type,
            reference_id=original.reference_id,
            order_id=original.order_id,
            resent_from_id=original.id,
        ),
    )
    changes = {
        "order_id": original.order_id,
        "resent_from_id": original.id,
        "template": original.template,
        # Whether the address changed, never the address (the audit log is not for PII).
        "to_current_email": to_current_email,
        "same_recipient": recipient == original.recipient,
    }
    audit(session, principal, "message.resent", "message", copy.id, changes)
    what = "with the pickup code " if original.template in CARRIES_PICKUP_CODE else ""
    orders.add_note(
        session,
        principal,
        original.order_id,
        f"Message {original.id} ({original.template}) {what}sent again as message {copy.id}",
        kind=orders.NoteKind.MESSAGE_RESENT,
    )
    if checked is not None:
        idempotency.finish(session, scope, checked, 201, {"message_id": copy.id})
    return copy


def _replayed(session: Session, response: Any) -> Message:
    message_id = response.get("message_id") if isinstance(response, dict) else None
    message = None if message_id is None else notifier.get_message(session, int(message_id))
    if message is None:
        raise NotFound("the message this key queued no longer exists")
    return message
