from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.channels.deps import ChannelCtx
from mercato.customers import service
from mercato.customers.models import Customer
from mercato.customers.schemas import CustomerLoginIn, CustomerOut, CustomerTokenOut, RegisterIn
from mercato.deps import DbSession, Pagination, bearer_token, get_settings_dep, require
from mercato.errors import Unauthorized
from mercato.routing import router
from mercato.schemas import PageOut
from mercato.settings import Settings

api = router("/v1", tags=["customers"])

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


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


@api.post("/store/customers", response_model=CustomerTokenOut, status_code=201)
def register(
    body: RegisterIn, session: DbSession, channel: ChannelCtx, settings: SettingsDep
) -> CustomerTokenOut:
    customer = service.register(session, channel.id, body)
    token, row = service.issue_token(session, customer, settings.customer_token_ttl_hours)
    return CustomerTokenOut(
        token=token, expires_at=row.expires_at, customer=CustomerOut.model_validate(customer)
    )


@api.post("/store/customers/login", response_model=CustomerTokenOut)
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


@api.get("/customers", response_model=PageOut[CustomerOut])
def list_customers(
    session: DbSession,
    page: Pagination,
    principal: Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))],
    email: Annotated[str | None, Query(max_length=254)] = None,
) -> PageOut[CustomerOut]:
    if email:
        principal.require(Permission.CUSTOMERS_PII)
    cursor, limit = page
    result = service.list_customers(session, email=email, cursor=cursor, limit=limit)
    items = [_redacted(CustomerOut.model_validate(c), principal) for c in result.items]
    return PageOut(items=items, next_cursor=result.next_cursor)


@api.get("/customers/{customer_id}", response_model=CustomerOut)
def get_customer(
    customer_id: int,
    session: DbSession,
    principal: Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))],
) -> CustomerOut:
    return _redacted(
        CustomerOut.model_validate(service.get_customer(session, customer_id)), principal
    )


def _redacted(out: CustomerOut, principal: Principal) -> CustomerOut:
    """Roles without customers:pii (analysts) see the record without personal data."""
    if principal.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(
        update={"email": None, "phone": None, "first_name": None, "last_name": None}
    )
