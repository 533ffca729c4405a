"""Data subject requests over HTTP: staff export and erase; a shopper exports their own data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers.deps import CustomerId
from mercato.deps import DbSession, IdempotencyKey, Pagination, get_database, require
from mercato.errors import Unauthorized, ValidationProblem
from mercato.idempotency import Idempotent, shopper_scope
from mercato.pagination import decode_id_cursor, page_of
from mercato.privacy import scrub, service
from mercato.routing import router
from mercato.schemas import PageOut, StrictModel

api = router("/v1", tags=["privacy"])

PrivacyOfficer = Annotated[Principal, Depends(require(Permission.PRIVACY_WRITE))]


class PrivacyRequestIn(StrictModel):
    reason: str | None = Field(default=None, max_length=500)


class ErasureIn(StrictModel):
    reason: str = Field(min_length=1, max_length=500)
    # The customer id again: erasure cannot be undone, so the caller says it twice.
    confirm_customer_id: int


class PrivacyRequestOut(StrictModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    customer_id: int
    reference: str | None
    actor_type: str
    actor_id: str | None
    reason: str | None
    summary: dict[str, Any]
    requested_at: datetime
    completed_at: datetime | None


@api.post("/customers/{customer_id}/privacy/export")
def export_customer(
    customer_id: int, session: DbSession, principal: PrivacyOfficer, body: PrivacyRequestIn
) -> dict[str, Any]:
    """Everything held about the person, from every domain, as one JSON document (DSAR)."""
    return service.export_customer(session, principal, customer_id, body.reason)


@api.post(
    "/customers/{customer_id}/privacy/erase",
    response_model=PrivacyRequestOut,
    status_code=201,
    responses={
        409: {
            "description": "Already erased (`already-erased`), or orders not yet delivered or "
            "returns in progress (`erasure-blocked`, each listed under `blocking`): nothing "
            "changed"
        }
    },
)
def erase_customer(
    customer_id: int,
    body: ErasureIn,
    session: DbSession,
    principal: PrivacyOfficer,
    request: Request,
    after: BackgroundTasks,
) -> PrivacyRequestOut:
    """Erase the person's personal data everywhere; orders keep amounts and a reference.

    Refused while an order is not yet delivered, collected or cancelled, or a return is in
    progress: they still need the person's address."""
    if body.confirm_customer_id != customer_id:
        raise ValidationProblem.field(
            "body.confirm_customer_id", "must repeat the customer id of the path"
        )
    erased = service.erase_customer(session, principal, customer_id, body.reason)
    # Once committed and answered: old row versions leave the database files.
    swept = list(erased.summary.get("sweep", {}))
    after.add_task(scrub.scrub_quietly, get_database(request).engine, swept)
    return PrivacyRequestOut.model_validate(erased)


class DomainShareOut(StrictModel):
    domain: str
    records: int
    erases: bool = Field(
        description="true: erased or pseudonymised (orders keep amounts, lines and taxes "
        "under the erasure's reference); false: kept as it is (accounting records)"
    )


class BlockerOut(StrictModel):
    kind: str
    id: int
    number: str
    status: str
    why: str


class ErasurePreviewOut(StrictModel):
    customer_id: int
    already_erased: bool
    domains: list[DomainShareOut]
    blocking: list[BlockerOut]


def erasure_preview_out(preview: service.ErasurePreview) -> ErasurePreviewOut:
    return ErasurePreviewOut(
        customer_id=preview.customer_id,
        already_erased=preview.already_erased,
        domains=[
            DomainShareOut(domain=d.domain, records=d.records, erases=d.erases)
            for d in preview.domains
        ],
        blocking=[BlockerOut(**b.as_json()) for b in preview.blocking],
    )


@api.get("/customers/{customer_id}/privacy/erasure-preview", response_model=ErasurePreviewOut)
def erasure_preview(
    customer_id: int, session: DbSession, principal: PrivacyOfficer
) -> ErasurePreviewOut:
    """Before an erasure: per domain, how many records it would erase (or pseudonymise)
    and how many it keeps, and the orders and returns that block it now. Changes nothing."""
    return erasure_preview_out(service.preview_erasure(session, customer_id))


@api.get("/privacy/requests", response_model=PageOut[PrivacyRequestOut])
def list_requests(
    session: DbSession,
    principal: PrivacyOfficer,
    page: Pagination,
    customer_id: Annotated[int | None, Query()] = None,
) -> PageOut[PrivacyRequestOut]:
    """The log of export and erasure requests, newest first: who asked, for whom, when, what
    changed."""
    cursor, limit = page
    rows = service.list_requests(session, customer_id, limit + 1, before=decode_id_cursor(cursor))
    found = page_of(rows, limit, key=lambda row: row.id)
    return PageOut(
        items=[PrivacyRequestOut.model_validate(r) for r in found.items],
        next_cursor=found.next_cursor,
    )


@api.post("/store/customers/me/data-export")
def export_my_data(
    session: DbSession, channel: ChannelCtx, customer_id: CustomerId, key: IdempotencyKey
) -> JSONResponse:
    """A signed-in shopper downloads everything held about them. With an
    ``Idempotency-Key`` a retry gets the same document and logs one request."""
    if customer_id is None:
        raise Unauthorized("sign in to export your data")
    actor = Principal(
        kind="customer", id=customer_id, customer_id=customer_id, channel_id=channel.id
    )

    def run() -> dict[str, Any]:
        return service.export_customer(
            session, actor, customer_id, "requested by the customer", verified_only=True
        )

    scope = shopper_scope("privacy.export", channel.id, customer_id)
    return Idempotent(session, scope, key, {}).run(run, 200)
