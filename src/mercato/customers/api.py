from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Response

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers import service
from mercato.customers.models import Customer, CustomerMerge
from mercato.customers.schemas import (
    AddressIn,
    AddressOut,
    AddressPatch,
    CustomerLoginIn,
    CustomerOut,
    CustomerTokenOut,
    IdentityIn,
    IdentityOut,
    MergeIn,
    MergeOut,
    ProfileOut,
    ProfilePatch,
    RegisterIn,
    StaffProfilePatch,
    SuggestionOut,
    TimelineEntryOut,
)
from mercato.deps import DbSession, Pagination, bearer_token, get_settings_dep, require
from mercato.errors import Unauthorized
from mercato.openapi import problem_responses
from mercato.pagination import MAX_LIMIT
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.settings import Settings

api = router("/v1", tags=["customers"])

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Reader = Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CUSTOMERS_WRITE))]


def current_customer(
    session: DbSession,
    channel: ChannelCtx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Customer:
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    return service.authenticate(session, token)


CurrentCustomer = Annotated[Customer, Depends(current_customer)]


# --- store: the customer's own account -------------------------------------------------


@api.post("/store/customers", response_model=CustomerTokenOut, status_code=201)
def register(
    body: RegisterIn, session: DbSession, channel: ChannelCtx, settings: SettingsDep
) -> CustomerTokenOut:
    customer = service.register(session, channel.id, body)
    token, row = service.issue_token(session, customer, settings.customer_token_ttl_hours)
    return CustomerTokenOut(
        token=token, expires_at=row.expires_at, customer=CustomerOut.model_validate(customer)
    )


@api.post(
    "/store/customers/login", response_model=CustomerTokenOut, responses=problem_responses(401)
)
def login(
    body: CustomerLoginIn, session: DbSession, channel: ChannelCtx, settings: SettingsDep
) -> CustomerTokenOut:
    customer = service.login(session, body.email, body.password)
    token, row = service.issue_token(session, customer, settings.customer_token_ttl_hours)
    return CustomerTokenOut(
        token=token, expires_at=row.expires_at, customer=CustomerOut.model_validate(customer)
    )


@api.get("/store/customers/me", response_model=CustomerOut)
def me(customer: CurrentCustomer) -> CustomerOut:
    return CustomerOut.model_validate(customer)


@api.patch("/store/customers/me", response_model=CustomerOut)
def update_me(
    body: ProfilePatch, session: DbSession, channel: ChannelCtx, customer: CurrentCustomer
) -> CustomerOut:
    """Change your name, phone number and preferences (language, currency, store)."""
    updated = service.update_profile(session, customer.id, body, channel_id=channel.id)
    return CustomerOut.model_validate(updated)


@api.get("/store/customers/me/addresses", response_model=PageOut[AddressOut])
def my_addresses(session: DbSession, customer: CurrentCustomer) -> PageOut[AddressOut]:
    addresses = service.list_addresses(session, customer.id)
    return PageOut(items=[service.address_out(a) for a in addresses])


@api.post("/store/customers/me/addresses", response_model=AddressOut, status_code=201)
def add_my_address(
    body: AddressIn, session: DbSession, channel: ChannelCtx, customer: CurrentCustomer
) -> AddressOut:
    return service.address_out(
        service.add_address(session, customer.id, body, channel_id=channel.id)
    )


@api.patch("/store/customers/me/addresses/{address_id}", response_model=AddressOut)
def update_my_address(
    address_id: int, body: AddressPatch, session: DbSession, customer: CurrentCustomer
) -> AddressOut:
    return service.address_out(service.update_address(session, customer.id, address_id, body))


@api.delete("/store/customers/me/addresses/{address_id}", status_code=204)
def delete_my_address(address_id: int, session: DbSession, customer: CurrentCustomer) -> Response:
    service.delete_address(session, customer.id, address_id)
    return Response(status_code=204)


# --- staff ------------------------------------------------------------------------------


@api.get("/customers", response_model=PageOut[CustomerOut])
def list_customers(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> PageOut[CustomerOut]:
    """Active profiles; ``email`` or ``phone`` find a person through the blind index."""
    if email or phone:
        principal.require(Permission.CUSTOMERS_PII)
    cursor, limit = page
    result = service.list_customers(session, email=email, phone=phone, cursor=cursor, limit=limit)
    items = [_redacted(CustomerOut.model_validate(c), principal) for c in result.items]
    return PageOut(items=items, next_cursor=result.next_cursor)


@api.get("/customers/merge-suggestions", response_model=PageOut[SuggestionOut])
def merge_suggestions(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    status: Annotated[str, Query(pattern="^(open|merged|dismissed)$")] = "open",
    customer_id: Annotated[int | None, Query(gt=0)] = None,
) -> PageOut[SuggestionOut]:
    """Likely duplicates, best score first (scores and reasons: ``customers.suggestions``)."""
    cursor, limit = page
    result = service.list_suggestions(
        session, status=status, customer_id=customer_id, cursor=cursor, limit=limit
    )
    return PageOut(
        items=[SuggestionOut.model_validate(s) for s in result.items],
        next_cursor=result.next_cursor,
    )


@api.post("/customers/merge-suggestions/{suggestion_id}/dismiss", response_model=SuggestionOut)
def dismiss_suggestion(suggestion_id: int, session: DbSession, principal: Writer) -> SuggestionOut:
    return SuggestionOut.model_validate(
        service.dismiss_suggestion(session, principal, suggestion_id)
    )


@api.get("/customers/merges/{merge_id}", response_model=MergeOut)
def get_merge(merge_id: str, session: DbSession, principal: Reader) -> MergeOut:
    return _merge_out(service.get_merge(session, merge_id))


@api.post("/customers/merges/{merge_id}/undo", response_model=MergeOut)
def undo_merge(merge_id: str, session: DbSession, principal: Writer) -> MergeOut:
    """Restore the merged profile and move back exactly what the merge moved."""
    return _merge_out(service.undo_merge(session, principal, merge_id))


@api.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(customer_id: int, session: DbSession, principal: Reader) -> CustomerOut:
    return _redacted(
        CustomerOut.model_validate(service.get_customer(session, customer_id)), principal
    )


@api.patch("/customers/{customer_id}", response_model=ProfileOut)
def update_customer(
    customer_id: int, body: StaffProfilePatch, session: DbSession, principal: Writer
) -> ProfileOut:
    """Change groups, tags, preferences and (with ``customers:pii``) name and phone."""
    if body.model_fields_set & service.PERSONAL_FIELDS:
        principal.require(Permission.CUSTOMERS_PII)
    service.update_profile(session, customer_id, body, actor=principal)
    return _redacted_profile(service.customer_profile(session, customer_id), principal)


@api.get("/customers/{customer_id}/profile", response_model=ProfileOut)
def get_profile(customer_id: int, session: DbSession, principal: Reader) -> ProfileOut:
    """The unified profile: identities, addresses, groups, tags, preferences and figures."""
    return _redacted_profile(service.customer_profile(session, customer_id), principal)


@api.post("/customers/{customer_id}/identities", response_model=IdentityOut, status_code=201)
def add_identity(
    customer_id: int, body: IdentityIn, session: DbSession, principal: Writer
) -> IdentityOut:
    principal.require(Permission.CUSTOMERS_PII)
    return IdentityOut.model_validate(service.add_identity(session, principal, customer_id, body))


@api.post("/customers/{customer_id}/addresses", response_model=AddressOut, status_code=201)
def add_address(
    customer_id: int, body: AddressIn, session: DbSession, principal: Writer
) -> AddressOut:
    principal.require(Permission.CUSTOMERS_PII)
    return service.address_out(service.add_address(session, customer_id, body, actor=principal))


@api.post("/customers/{customer_id}/merge", response_model=MergeOut, status_code=201)
def merge(customer_id: int, body: MergeIn, session: DbSession, principal: Writer) -> MergeOut:
    """Merge profile ``from`` into this one; other domains follow ``customer.merged``."""
    return _merge_out(service.merge(session, principal, customer_id, body.from_id))


@api.get("/customers/{customer_id}/timeline", response_model=PageOut[TimelineEntryOut])
def timeline(
    customer_id: int,
    session: DbSession,
    principal: Reader,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> PageOut[TimelineEntryOut]:
    """Every interaction on every channel, newest first (the profile and merged ones): the
    ``limit`` newest at or after ``since``, in one page."""
    entries = service.customer_timeline(session, customer_id, since=since, limit=limit)
    items = [TimelineEntryOut.model_validate(e, from_attributes=True) for e in entries]
    return PageOut(items=items)


def _merge_out(record: CustomerMerge) -> MergeOut:
    return MergeOut(
        merge_id=record.id,
        into=record.into_id,
        from_id=record.from_id,
        status=record.status,
        moved={k: len(v) for k, v in record.moved.items()},
        created_at=record.created_at,
        undone_at=record.undone_at,
    )


_PERSONAL = {"email": None, "phone": None, "first_name": None, "last_name": None}


def _redacted(out: CustomerOut, principal: Principal) -> CustomerOut:
    """Roles without customers:pii (analysts) see the record without personal data."""
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(update=_PERSONAL)


def _redacted_profile(out: ProfileOut, principal: Principal) -> ProfileOut:
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    hidden: dict[str, Any] = {
        **_PERSONAL,
        "identities": [i.model_copy(update={"value": None}) for i in out.identities],
        "addresses": [
            a.model_copy(update={f: None for f in _ADDRESS_PERSONAL}) for a in out.addresses
        ],
    }
    return out.model_copy(update=hidden)


# The country stays: aggregates by country are what analysts work with.
_ADDRESS_PERSONAL = ("name", "line1", "line2", "city", "region", "postal_code", "phone")
