from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Depends, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.db import utcnow
from mercato.deps import DbSession, IdempotencyKey, Pagination, require
from mercato.errors import ValidationProblem
from mercato.idempotency import Idempotent, scope_for
from mercato.promotions import service
from mercato.promotions.engine import PromotionResult, StackingMode
from mercato.promotions.models import Promotion, PromotionCode
from mercato.promotions.schemas import (
    ActionIn,
    AppliedDiscountOut,
    CodeOut,
    CodeRejectionOut,
    ConditionsIn,
    EvaluateIn,
    EvaluationOut,
    GenerateCodesIn,
    GeneratedCodesOut,
    LineDiscountOut,
    LineResultOut,
    PersonalCodeIn,
    PromotionCodeIn,
    PromotionIn,
    PromotionOut,
    PromotionPatch,
    PromotionStatus,
    RedemptionOut,
    RedemptionStatus,
)
from mercato.routing import router
from mercato.schemas import PageOut

api = router("/v1/promotions", tags=["promotions"])

Reader = Annotated[Principal, Depends(require(Permission.PROMOTIONS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PROMOTIONS_WRITE))]


def promotions_out(session: Session, promotions: Sequence[Promotion]) -> list[PromotionOut]:
    """Promotions with their budgets and usage: two queries for the whole list."""
    ids = [p.id for p in promotions]
    budgets = service.budgets_of(session, ids)
    usage = service.usage_of(session, ids)
    return [
        PromotionOut(
            id=p.id,
            name=p.name,
            description=p.description,
            status=PromotionStatus(p.status),
            priority=p.priority,
            stacking=StackingMode(p.stacking),
            requires_code=p.requires_code,
            conditions=ConditionsIn.model_validate(p.conditions),
            action=ActionIn.model_validate(p.action),
            starts_at=p.starts_at,
            ends_at=p.ends_at,
            budget=budgets[p.id],
            spent=usage[p.id].spent,
            max_uses=p.max_uses,
            max_uses_per_customer=p.max_uses_per_customer,
            redemptions=usage[p.id].redemptions,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )
        for p in promotions
    ]


def promotion_out(session: Session, promotion: Promotion) -> PromotionOut:
    return promotions_out(session, [promotion])[0]


def code_out(code: PromotionCode) -> CodeOut:
    return CodeOut(
        id=code.id,
        promotion_id=code.promotion_id,
        code=code.code,
        max_uses=code.max_uses,
        uses=code.uses,
        expires_at=code.expires_at,
        customer_id=code.customer_id,
        batch=code.batch,
        disabled=code.disabled_at is not None,
        created_at=code.created_at,
    )


def evaluation_out(result: PromotionResult) -> EvaluationOut:
    return EvaluationOut(
        currency=result.currency,
        lines=[
            LineResultOut(
                line_id=line.line_id,
                subtotal=line.subtotal,
                discounts=[
                    LineDiscountOut(promotion_id=d.promotion_id, amount=d.amount)
                    for d in line.discounts
                ],
                discount=line.discount,
                total=line.total,
            )
            for line in result.lines
        ],
        applied=[AppliedDiscountOut.model_validate(a) for a in result.applied],
        rejected_codes=[CodeRejectionOut.model_validate(r) for r in result.rejected_codes],
        subtotal=result.subtotal,
        line_discount=result.line_discount,
        shipping=result.shipping,
        shipping_discount=result.shipping_discount,
        discount=result.discount,
        total=result.total,
    )


# --- promotions -----------------------------------------------------------------------------


@api.get("", response_model=PageOut[PromotionOut])
def list_promotions(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    status: PromotionStatus | None = None,
) -> PageOut[PromotionOut]:
    cursor, limit = page
    result = service.list_promotions(session, status=status, cursor=cursor, limit=limit)
    return PageOut(items=promotions_out(session, result.items), next_cursor=result.next_cursor)


@api.post("", response_model=PromotionOut, status_code=201)
def create_promotion(body: PromotionIn, session: DbSession, principal: Writer) -> PromotionOut:
    return promotion_out(session, service.create_promotion(session, principal, body))


@api.get("/redemptions", response_model=PageOut[RedemptionOut])
def list_redemptions(
    session: DbSession,
    page: Pagination,
    principal: Reader,
    promotion_id: int | None = None,
    reference: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: int | None = None,
    status: RedemptionStatus | None = None,
) -> PageOut[RedemptionOut]:
    """Redemptions of a promotion, of one checkout or order (``reference``), or of a customer."""
    cursor, limit = page
    result = service.list_redemptions(
        session,
        promotion_id=promotion_id,
        reference=reference,
        customer_id=customer_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return PageOut(
        items=[RedemptionOut.model_validate(r) for r in result.items],
        next_cursor=result.next_cursor,
    )


@api.post("/evaluate", response_model=EvaluationOut)
def evaluate(body: EvaluateIn, session: DbSession, principal: Reader) -> EvaluationOut:
    """Preview what a cart would get (nothing is reserved): automatic promotions and codes."""
    if body.at is not None and body.at.utcoffset() is None:
        raise ValidationProblem.field("body.at", "needs a time zone, e.g. 2025-06-01T00:00:00Z")
    items = [
        service.CartLineInput(x.line_id, x.variant_id, x.quantity, x.unit_price, x.discountable)
        for x in body.lines
    ]
    currency = service.check_cart(body.currency, body.shipping, items)
    context = service.CartEvaluationContext(
        currency=currency,
        channel_id=body.channel_id,
        now=body.at or utcnow(),
        customer_id=body.customer_id,
        customer_groups=frozenset(body.customer_groups),
        first_order=body.first_order,
        shipping=body.shipping,
        codes=body.codes,
    )
    lines = service.cart_lines(session, items)
    return evaluation_out(service.evaluate(session, lines=lines, context=context))


@api.get("/{promotion_id}", response_model=PromotionOut)
def get_promotion(promotion_id: int, session: DbSession, principal: Reader) -> PromotionOut:
    return promotion_out(session, service.get_promotion(session, promotion_id))


@api.patch("/{promotion_id}", response_model=PromotionOut)
def update_promotion(
    promotion_id: int, body: PromotionPatch, session: DbSession, principal: Writer
) -> PromotionOut:
    promotion = service.update_promotion(session, principal, promotion_id, body)
    return promotion_out(session, service.get_promotion(session, promotion.id))


# --- codes ----------------------------------------------------------------------------------


@api.get("/{promotion_id}/codes", response_model=PageOut[CodeOut])
def list_codes(
    promotion_id: int,
    session: DbSession,
    page: Pagination,
    principal: Reader,
    batch: Annotated[str | None, Query(max_length=36)] = None,
    customer_id: int | None = None,
) -> PageOut[CodeOut]:
    """The promotion's codes with their usage."""
    cursor, limit = page
    result = service.list_codes(
        session, promotion_id, batch=batch, customer_id=customer_id, cursor=cursor, limit=limit
    )
    return PageOut(items=[code_out(c) for c in result.items], next_cursor=result.next_cursor)


@api.post("/{promotion_id}/codes", response_model=CodeOut, status_code=201)
def create_code(
    promotion_id: int, body: PromotionCodeIn, session: DbSession, principal: Writer
) -> CodeOut:
    """A code the merchant chose (stored upper-case; unique across all promotions)."""
    code = service.create_code(
        session,
        principal,
        promotion_id,
        body.code,
        max_uses=body.max_uses,
        expires_at=body.expires_at,
    )
    return code_out(code)


@api.post(
    "/{promotion_id}/codes/generate",
    response_model=GeneratedCodesOut,
    status_code=201,
    responses={201: {"content": {"text/csv": {}}}},
)
def generate_codes(
    promotion_id: int,
    body: GenerateCodesIn,
    session: DbSession,
    principal: Writer,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Generate unique random codes; the full list is answered here, as JSON or CSV."""
    generated = service.generate_codes(
        session,
        principal,
        promotion_id,
        body.count,
        prefix=body.prefix,
        length=body.length,
        max_uses=body.max_uses,
        expires_at=body.expires_at,
    )
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["code"])
        writer.writerows([code] for code in generated.codes)
        return Response(
            buffer.getvalue(),
            status_code=201,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="promotion-{promotion_id}-{generated.batch}.csv"'
                )
            },
        )
    out = GeneratedCodesOut(
        promotion_id=promotion_id,
        batch=generated.batch,
        count=len(generated.codes),
        codes=generated.codes,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@api.post("/{promotion_id}/personal-codes", response_model=CodeOut, status_code=201)
def issue_personal_code(
    promotion_id: int,
    body: PersonalCodeIn,
    session: DbSession,
    principal: Writer,
    key: IdempotencyKey,
) -> JSONResponse:
    """A one-time code only this customer can use, in any channel."""

    def run() -> CodeOut:
        if body.valid_days is not None and body.expires_at is not None:
            raise ValidationProblem.field("body.valid_days", "give valid_days or expires_at")
        if body.valid_days is not None:
            code = service.issue_personal_offer(
                session, principal, promotion_id, body.customer_id, body.valid_days
            )
        else:
            code = service.issue_personal_code(
                session, principal, promotion_id, body.customer_id, body.expires_at
            )
        return code_out(service.code_by_value(session, code))

    scope = scope_for(f"promotions.personal.{promotion_id}", principal)
    return Idempotent(session, scope, key, body).run(run)


@api.post("/{promotion_id}/codes/{code_id}/disable", response_model=CodeOut)
def disable_code(promotion_id: int, code_id: int, session: DbSession, principal: Writer) -> CodeOut:
    return code_out(service.disable_code(session, principal, promotion_id, code_id))
