"""Cart evaluation: which promotions and codes a cart may use, and what they give.

Carts (and the staff preview) describe a cart; the engine
(:mod:`mercato.promotions.engine`) computes the discounts. Limits are read here only to
leave out what cannot apply; they are enforced when checkout reserves the redemptions
(:mod:`mercato.promotions.redemptions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.orm import Session

from mercato.catalog import service as catalog
from mercato.errors import ValidationProblem
from mercato.money import ZERO, check_precision, to_minor
from mercato.promotions import engine
from mercato.promotions.codes import normalise_code
from mercato.promotions.definitions import checked_currency, engine_promotion
from mercato.promotions.engine import CodeRejection, PromotionResult, Reason
from mercato.promotions.models import (
    Promotion,
    PromotionBudget,
    PromotionCode,
    PromotionCustomerUsage,
)
from mercato.promotions.schemas import MAX_CODES_PER_CART, PromotionStatus


@dataclass(frozen=True, kw_only=True)
class CartEvaluationContext:
    """Everything about a cart except its lines; ``codes`` as the shopper typed them."""

    currency: str
    channel_id: int
    now: datetime
    customer_id: int | None = None
    customer_groups: frozenset[str] = frozenset()
    first_order: bool = False
    shipping: Decimal = ZERO
    codes: Sequence[str] = ()


@dataclass(frozen=True)
class CartLineInput:
    """A cart line as carts know it; :func:`cart_lines` adds product and categories."""

    line_id: str
    variant_id: int
    quantity: int
    unit_price: Decimal
    discountable: bool = True


def check_cart(
    currency: str, shipping: Decimal, items: Sequence[CartLineInput], field: str = "body"
) -> str:
    """The cart's currency (upper-case), or a 422 naming the field that does not fit it."""
    code = checked_currency(currency, f"{field}.currency")
    try:
        check_precision(shipping, code)
    except ValueError as exc:
        raise ValidationProblem.field(f"{field}.shipping", str(exc)) from None
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.line_id in seen:
            raise ValidationProblem.field(f"{field}.lines[{i}].line_id", "listed twice")
        seen.add(item.line_id)
        try:
            check_precision(item.unit_price, code)
        except ValueError as exc:
            raise ValidationProblem.field(f"{field}.lines[{i}].unit_price", str(exc)) from None
    return code


def cart_lines(
    session: Session, items: Sequence[CartLineInput], field: str = "body.lines"
) -> list[engine.CartLine]:
    """Engine lines with each variant's product and categories (and their ancestors)."""
    infos = catalog.variant_infos(session, [item.variant_id for item in items])
    lines = []
    for i, item in enumerate(items):
        info = infos.get(item.variant_id)
        if info is None:
            raise ValidationProblem.field(
                f"{field}[{i}].variant_id", f"unknown variant {item.variant_id}"
            )
        lines.append(
            engine.CartLine(
                line_id=item.line_id,
                variant_id=item.variant_id,
                product_id=info.product_id,
                category_ids=info.category_ids,
                quantity=item.quantity,
                unit_price=item.unit_price,
                discountable=item.discountable,
            )
        )
    return lines


@dataclass(frozen=True)
class _Candidate:
    """A promotion loaded for a cart, with the counters its limits are checked against."""

    row: Promotion
    customer_uses: int
    budget_left: int | None  # minor units; None: no budget in this currency

    def blocked(self, customer_id: int | None) -> Reason | None:
        """Why the promotion cannot apply to any cart of this customer, or None."""
        row = self.row
        if row.status != PromotionStatus.ACTIVE.value:
            return Reason.INACTIVE
        if row.max_uses is not None and row.uses >= row.max_uses:
            return Reason.USAGE_LIMIT_REACHED
        if row.max_uses_per_customer is not None:
            if customer_id is None:
                return Reason.SIGN_IN_REQUIRED
            if self.customer_uses >= row.max_uses_per_customer:
                return Reason.CUSTOMER_LIMIT_REACHED
        if self.budget_left is not None and self.budget_left <= 0:
            return Reason.BUDGET_EXHAUSTED
        return None


def _normalised_codes(codes: Sequence[str]) -> list[str]:
    found = list(dict.fromkeys(c for c in (normalise_code(raw) for raw in codes) if c))
    if len(found) > MAX_CODES_PER_CART:
        raise ValidationProblem.field("body.codes", f"at most {MAX_CODES_PER_CART} codes")
    return found


def _load_candidates(
    session: Session, context: CartEvaluationContext, codes: Sequence[str]
) -> tuple[dict[int, _Candidate], dict[str, PromotionCode]]:
    """Active automatic promotions running now, plus the promotions of the applied codes
    whatever their state (so a code gets a reason), with their counters and the code rows
    themselves: one query."""
    found: dict[int, _Candidate] = {}
    code_rows: dict[str, PromotionCode] = {}
    for promotion, limit, spent, customer_uses, code in session.execute(
        _candidates_query(context, codes)
    ):
        found.setdefault(
            promotion.id,
            _Candidate(promotion, customer_uses or 0, None if limit is None else limit - spent),
        )
        if code is not None:
            code_rows[code.code] = code
    return found, code_rows


def _candidates_query(
    context: CartEvaluationContext, codes: Sequence[str]
) -> Select[Promotion, int, int, int, PromotionCode]:
    now = context.now
    automatic = and_(
        Promotion.status == PromotionStatus.ACTIVE.value,
        Promotion.requires_code.is_(False),
        or_(Promotion.starts_at.is_(None), Promotion.starts_at <= now),
        or_(Promotion.ends_at.is_(None), Promotion.ends_at > now),
    )
    wanted = [c for c in codes if len(c) <= 64]
    # A guest has no usage row: the join condition is then simply false.
    own_usage = (
        PromotionCustomerUsage.customer_id == context.customer_id
        if context.customer_id is not None
        else false()
    )
    return (
        select(
            Promotion,
            PromotionBudget.limit_minor,
            PromotionBudget.spent_minor,
            PromotionCustomerUsage.uses,
            PromotionCode,
        )
        .outerjoin(
            PromotionBudget,
            and_(
                PromotionBudget.promotion_id == Promotion.id,
                PromotionBudget.currency == context.currency,
            ),
        )
        .outerjoin(
            PromotionCustomerUsage,
            and_(PromotionCustomerUsage.promotion_id == Promotion.id, own_usage),
        )
        .outerjoin(
            PromotionCode,
            and_(PromotionCode.promotion_id == Promotion.id, PromotionCode.code.in_(wanted))
            if wanted
            else false(),
        )
        .where(or_(automatic, PromotionCode.id.is_not(None)) if wanted else automatic)
        .execution_options(populate_existing=True)
    )


def _code_problem(
    code: PromotionCode | None,
    candidates: Mapping[int, _Candidate],
    blocked: Mapping[int, Reason],
    context: CartEvaluationContext,
) -> Reason | None:
    if code is None or code.promotion_id not in candidates:
        return Reason.UNKNOWN_CODE
    # Ownership first: nothing about another customer's code is revealed.
    if code.customer_id is not None and code.customer_id != context.customer_id:
        return Reason.SIGN_IN_REQUIRED if context.customer_id is None else Reason.NOT_YOUR_CODE
    if code.disabled_at is not None:
        return Reason.INACTIVE
    if code.expires_at is not None and code.expires_at <= context.now:
        return Reason.EXPIRED
    if code.max_uses is not None and code.uses >= code.max_uses:
        return Reason.USAGE_LIMIT_REACHED
    return blocked.get(code.promotion_id)


def evaluate(
    session: Session, *, lines: Sequence[engine.CartLine], context: CartEvaluationContext
) -> PromotionResult:
    """The discounts of a cart: its automatic promotions and the promotions of its codes.

    One query however many promotions and codes exist. Every code that gives no discount
    has one reason in ``rejected_codes``. A promotion whose limits are reached does not
    apply; one whose remaining budget is below the discount it would give does not apply
    either (the cart is evaluated again without it).
    """
    codes = _normalised_codes(context.codes)
    candidates, code_rows = _load_candidates(session, context, codes)
    blocked = {
        pid: reason
        for pid, candidate in candidates.items()
        if (reason := candidate.blocked(context.customer_id)) is not None
    }
    rejected, usable = _sort_codes(codes, code_rows, candidates, blocked, context)
    open_ = {pid: c for pid, c in candidates.items() if pid not in blocked}
    return _apply_within_budgets(lines, context, open_, usable, rejected)


def _sort_codes(
    codes: Sequence[str],
    code_rows: Mapping[str, PromotionCode],
    candidates: Mapping[int, _Candidate],
    blocked: Mapping[int, Reason],
    context: CartEvaluationContext,
) -> tuple[dict[str, CodeRejection], dict[str, int]]:
    """The codes refused (with their reason), and the usable ones with their promotion."""
    rejected: dict[str, CodeRejection] = {}
    usable: dict[str, int] = {}
    for code in codes:
        row = code_rows.get(code)
        reason = _code_problem(row, candidates, blocked, context)
        if reason is not None:
            rejected[code] = CodeRejection(code, row.promotion_id if row else None, reason)
        elif row is not None:
            usable[code] = row.promotion_id
    return rejected, usable


def _apply_within_budgets(
    lines: Sequence[engine.CartLine],
    context: CartEvaluationContext,
    candidates: dict[int, _Candidate],
    usable: dict[str, int],
    rejected: dict[str, CodeRejection],
) -> PromotionResult:
    promotions = {pid: engine_promotion(c.row) for pid, c in candidates.items()}
    while True:
        result = engine.apply_promotions(
            lines, promotions.values(), _engine_context(context, usable)
        )
        over = _over_budget(result, candidates)
        if not over:
            break
        for pid in over:
            del promotions[pid]
        for code, pid in list(usable.items()):
            if pid in over:
                rejected[code] = CodeRejection(code, pid, Reason.BUDGET_EXHAUSTED)
                del usable[code]
    merged = {r.code: r for r in result.rejected_codes} | rejected
    return dataclasses.replace(
        result, rejected_codes=tuple(merged[code] for code in sorted(merged))
    )


def _engine_context(context: CartEvaluationContext, usable: dict[str, int]) -> engine.CartContext:
    return engine.CartContext(
        currency=context.currency,
        channel_id=context.channel_id,
        now=context.now,
        customer_id=context.customer_id,
        customer_groups=context.customer_groups,
        first_order=context.first_order,
        codes=usable,
        shipping=context.shipping,
    )


def _over_budget(result: PromotionResult, candidates: Mapping[int, _Candidate]) -> set[int]:
    """Applied promotions whose discount is more than their remaining budget."""
    return {
        a.promotion_id
        for a in result.applied
        if (left := candidates[a.promotion_id].budget_left) is not None
        and to_minor(a.amount, result.currency) > left
    }
