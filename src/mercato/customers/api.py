from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from mercato.auth.passwords import PasswordChange
from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx, StandaloneChannelCtx
from mercato.customers import service, sessions
from mercato.customers.models import Customer, CustomerMerge
from mercato.customers.schemas import (
    AddressIn,
    AddressOut,
    AddressPatch,
    CustomerLoginIn,
    CustomerOut,
    CustomerPasswordIn,
    CustomerTokenOut,
    IdentityIn,
    IdentityOut,
    MergeIn,
    MergeOut,
    ProfileOut,
    ProfilePatch,
    RefreshIn,
    RegisterIn,
    StaffProfilePatch,
    SuggestionOut,
    TimelineEntryOut,
)
from mercato.deps import (
    DbSession,
    IdempotencyKey,
    Pagination,
    bearer_token,
    get_database,
    get_settings_dep,
    require,
)
from mercato.errors import Unauthorized
from mercato.http_security import client_address
from mercato.idempotency import Idempotent, secret_fingerprint, shopper_scope
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


def _tokens_out(issued: sessions.Issued) -> CustomerTokenOut:
    return CustomerTokenOut(
        token=issued.access_token,
        expires_at=issued.access_expires_at,
        refresh_token=issued.refresh_token,
        refresh_expires_at=issued.refresh_expires_at,
        customer=CustomerOut.model_validate(issued.customer),
    )


@api.post("/store/customers", response_model=CustomerTokenOut, status_code=201)
def register(
    body: RegisterIn,
    session: DbSession,
    channel: ChannelCtx,
    settings: SettingsDep,
    key: IdempotencyKey,
) -> JSONResponse:
    """Create an account; the answer signs the customer in. With an ``Idempotency-Key`` a
    retry gets the same account and token instead of an email-taken conflict."""

    def run() -> CustomerTokenOut:
        customer = service.register(session, channel.id, body)
        return _tokens_out(sessions.start(session, customer, settings))

    payload = {**body.model_dump(mode="json"), "password": secret_fingerprint(body.password)}
    scope = shopper_scope("customer.register", channel.id)
    return Idempotent(session, scope, key, payload).run(run)


@api.post(
    "/store/customers/login",
    response_model=CustomerTokenOut,
    responses=problem_responses(401, 429),
)
def login(
    body: CustomerLoginIn, request: Request, channel: StandaloneChannelCtx, settings: SettingsDep
) -> CustomerTokenOut:
    """Sign in: a short-lived access token and a refresh token. Repeated failures lock the
    account, and the client address, for a while (a correct password resets the account)."""
    issued = sessions.sign_in(
        get_database(request), body.email, body.password, client_address(request), settings
    )
    return _tokens_out(issued)


@api.post(
    "/store/customers/token",
    response_model=CustomerTokenOut,
    responses={
        409: {"description": "A request with this Idempotency-Key is in progress"},
        401: {
            "description": "Unknown, expired or revoked refresh token "
            "(`invalid-refresh-token`), or one used before (`refresh-token-reused`: the "
            "session has ended)"
        },
    },
)
def refresh_tokens(
    body: RefreshIn,
    request: Request,
    channel: StandaloneChannelCtx,
    settings: SettingsDep,
    key: IdempotencyKey,
) -> JSONResponse:
    """Trade the refresh token for a new access token and refresh token. Each refresh
    token works once: presenting a used one again ends the whole session, except as a
    retry with the same `Idempotency-Key`, which gets the first answer again."""
    answer, replayed = sessions.refresh(
        get_database(request),
        body.refresh_token,
        settings,
        lambda issued: _tokens_out(issued).model_dump(mode="json"),
        key,
    )
    return JSONResponse(answer, headers={"Idempotent-Replayed": "true"} if replayed else None)


@api.post(
    "/store/customers/logout",
    status_code=204,
    responses={401: {"description": "No customer token, or one this server never issued"}},
)
def logout(
    session: DbSession,
    channel: ChannelCtx,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """End this session: its access token and its refresh token stop working. Safe to
    repeat, and works with an expired access token too."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    sessions.sign_out(session, token)
    return Response(status_code=204)


@api.post(
    "/store/customers/me/password",
    status_code=204,
    responses={
        409: {"description": "A request with this Idempotency-Key is in progress"},
        401: {"description": "No valid customer token"},
        422: {"description": "`body.current_password` is wrong, or the new one is not valid"},
        429: {"description": "Too many wrong passwords (`too-many-attempts`), see `Retry-After`"},
    },
)
def change_password(
    body: CustomerPasswordIn,
    request: Request,
    channel: StandaloneChannelCtx,
    settings: SettingsDep,
    key: IdempotencyKey,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Change your password. Every other session of yours ends; this one goes on. A wrong
    current password counts as a failed sign-in."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("a customer bearer token is required", code="missing-customer-token")
    change = PasswordChange(body.current_password, body.new_password, key)
    replayed = sessions.change_password(
        get_database(request), token, change, client_address(request), settings
    )
    return Response(status_code=204, headers={"Idempotent-Replayed": "true"} if replayed else None)


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
    body: AddressIn,
    session: DbSession,
    channel: ChannelCtx,
    customer: CurrentCustomer,
    key: IdempotencyKey,
) -> JSONResponse:
    """Save an address. With an ``Idempotency-Key`` a retry saves it once."""

    def run() -> AddressOut:
        return service.address_out(
            service.add_address(session, customer.id, body, channel_id=channel.id)
        )

    scope = shopper_scope("customer.address", channel.id, customer.id)
    return Idempotent(session, scope, key, body.model_dump(mode="json")).run(run)


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
    name: Annotated[str | None, Query(max_length=200)] = None,
    loyalty_card: Annotated[str | None, Query(max_length=64)] = None,
) -> PageOut[CustomerOut]:
    """Active profiles; ``email``, ``phone``, ``name`` (the whole name, in any order) or
    ``loyalty_card`` find a person through the blind indexes (exact values only: the data
    is encrypted)."""
    if email or phone or name or loyalty_card:
        principal.require(Permission.CUSTOMERS_PII)
    cursor, limit = page
    result = service.list_customers(
        session,
        email=email,
        phone=phone,
        name=name,
        loyalty_card=loyalty_card,
        cursor=cursor,
        limit=limit,
    )
    items = [redacted(CustomerOut.model_validate(c), principal) for c in result.items]
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
    return merge_out(service.get_merge(session, merge_id))


@api.post("/customers/merges/{merge_id}/undo", response_model=MergeOut)
def undo_merge(merge_id: str, session: DbSession, principal: Writer) -> MergeOut:
    """Restore the merged profile and move back exactly what the merge moved."""
    return merge_out(service.undo_merge(session, principal, merge_id))


@api.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(customer_id: int, session: DbSession, principal: Reader) -> CustomerOut:
    return redacted(
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
    return redacted_profile(service.customer_profile(session, customer_id), principal)


@api.get("/customers/{customer_id}/profile", response_model=ProfileOut)
def get_profile(customer_id: int, session: DbSession, principal: Reader) -> ProfileOut:
    """The unified profile: identities, addresses, groups, tags, preferences and figures."""
    return redacted_profile(service.customer_profile(session, customer_id), principal)


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
    return merge_out(service.merge(session, principal, customer_id, body.from_id))


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


def merge_out(record: CustomerMerge) -> MergeOut:
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


def redacted(out: CustomerOut, principal: Principal) -> CustomerOut:
    """Roles without customers:pii (analysts) see the record without personal data."""
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(update=_PERSONAL)


def redacted_profile(out: ProfileOut, principal: Principal) -> ProfileOut:
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
_ADDRESS_PERSONAL = (
    "name",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "phone",
    "latitude",
    "longitude",
    "coordinates_source",
)
