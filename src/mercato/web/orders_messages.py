"""The messages sent to the customer about an order, on the order page, and resending one
(a customer lost the pickup code, or the email went to a mistyped address). Calls what
``/v1/orders/{id}/messages`` calls: the same listing (the address only for roles with
customers:pii), the same resend (orders:write, once per key, audited, in the timeline)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.deps import DbSession
from mercato.marketing import order_messages
from mercato.marketing.api import message_out
from mercato.marketing.schemas import MessageOut
from mercato.web import PREFIX
from mercato.web.pages import redirect
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page

# Included by the orders screen's router, which adds the back office prefix.
router = APIRouter(include_in_schema=False)

Key = Annotated[str | None, Form(max_length=64)]


def messages_of(session: Session, principal: Principal, order_id: int) -> list[MessageOut]:
    """The order's messages as the API answers them (redacted for roles without PII)."""
    found = order_messages.order_messages(session, principal, order_id)
    return [message_out(m, principal) for m in found]


@router.post("/orders/{order_id}/messages/{message_id}/resend")
def resend(
    request: Request,
    order_id: int,
    message_id: int,
    session: DbSession,
    idempotency_key: Key = None,
    to_current_email: Annotated[bool, Form()] = False,
    principal: Principal = require_page(Permission.ORDERS_WRITE),
) -> Response:
    # The service checks the order is visible, the message belongs to it and may be resent;
    # the form's hidden key makes a double click queue one copy.
    order_messages.resend(
        session,
        principal,
        message_id,
        idempotency_key,
        order_id=order_id,
        to_current_email=to_current_email,
    )
    _ = gettext_for(request).gettext
    text = (
        _("Message queued again, to the order's current email.")
        if to_current_email
        else _("Message queued again, to the same address.")
    )
    return redirect(request, f"{PREFIX}/orders/{order_id}", text)
