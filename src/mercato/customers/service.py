"""Customer accounts for storefront use: register, log in, authenticate."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mercato.auth.passwords import hash_password, new_token, token_hash, verify_password
from mercato.customers.models import Customer, CustomerToken
from mercato.customers.schemas import RegisterIn
from mercato.db import utcnow
from mercato.errors import Conflict, NotFound, Unauthorized, ValidationProblem
from mercato.events import publish
from mercato.pagination import Page, decode_cursor, page_of

CUSTOMER_TOKEN_PREFIX = "mct"


def register(session: Session, channel_id: int, data: RegisterIn) -> Customer:
    email = data.email.strip().lower()
    if session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise Conflict("an account with this email exists", code="duplicate-email")
    customer = Customer(
        email=email,
        phone=data.phone,
        password_hash=hash_password(data.password),
        first_name=data.first_name,
        last_name=data.last_name,
        locale=data.locale,
        registered_channel_id=channel_id,
        created_at=utcnow(),
    )
    session.add(customer)
    session.flush()
    publish(
        session,
        "customer.registered",
        {"customer_id": customer.id, "channel_id": channel_id},
        aggregate_type="customer",
        aggregate_id=customer.id,
    )
    return customer


def issue_token(session: Session, customer: Customer, ttl_hours: int) -> tuple[str, CustomerToken]:
    token = new_token(CUSTOMER_TOKEN_PREFIX)
    row = CustomerToken(
        customer_id=customer.id,
        token_hash=token_hash(token),
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(hours=ttl_hours),
    )
    session.add(row)
    session.flush()
    return token, row


def login(session: Session, email: str, password: str) -> Customer:
    customer = session.scalar(select(Customer).where(Customer.email == email.strip().lower()))
    ok = verify_password(customer.password_hash if customer else None, password)
    if customer is None or not ok:
        raise Unauthorized("wrong email or password", code="invalid-credentials")
    return customer


def authenticate(session: Session, token: str) -> Customer:
    row = session.execute(
        select(CustomerToken, Customer)
        .join(Customer, Customer.id == CustomerToken.customer_id)
        .where(CustomerToken.token_hash == token_hash(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("unknown customer token", code="invalid-customer-token")
    tok, customer = row
    if tok.revoked_at is not None or tok.expires_at < utcnow():
        raise Unauthorized("customer token expired or revoked", code="invalid-customer-token")
    return customer


def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


def list_customers(
    session: Session, *, email: str | None, cursor: str | None, limit: int
) -> Page[Customer]:
    query = select(Customer).order_by(Customer.id)
    if email:
        query = query.where(Customer.email == email.strip().lower())
    after = decode_cursor(cursor)
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise ValidationProblem.field("query.cursor", "not a cursor returned by this API")
        query = query.where(Customer.id > after)
    return page_of(list(session.scalars(query.limit(limit + 1))), limit, key=lambda c: c.id)


def customer_groups(session: Session, customer_id: int | None) -> frozenset[str]:
    if customer_id is None:
        return frozenset()
    groups = session.scalar(select(Customer.groups).where(Customer.id == customer_id))
    return frozenset(groups or ())
