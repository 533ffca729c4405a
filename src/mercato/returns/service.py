"""Returns and exchanges for orders of every channel, received at any location that takes
returns, paid back to the original tenders or as store credit: the returns domain's public
face. Callers use ``from mercato.returns import service as returns``.

**Requesting** (:mod:`.requesting`). A return names order lines, units and a reason. It is
checked against the policy that applies to the order (the most specific of channel+country,
channel, country, default: :func:`policy_for`, :mod:`.policies`), its window (days after
the order was last fulfilled, delivered or picked up, else after it was placed:
:mod:`.window`), its non-returnable categories (a product's category or any ancestor), and
the units delivered and not yet returned or promised to another open return. The policy is
copied onto the return: later edits of the policy do not change a return already requested.

**Status changes** (:mod:`.transitions`) are conditional UPDATEs recorded on the return's
timeline and published as ``return.<status>``; reading and listing is :mod:`.records`.

**Receiving** (:mod:`.receiving`). One conditional UPDATE moves the return from
``approved`` to ``received`` and ``inspected`` (two concurrent receipts: one wins, the
other gets a 409) and each line's refund is priced (see :mod:`mercato.returns.amounts`).
The receiving flow (``mercato.flows.returns.receive``) also counts the units back on the
order and posts them to stock.

**Settling** (``mercato.flows.returns.settle``) pays an inspected return out around the
payment providers' calls. This domain keeps its records: what a settlement pays and
charges (:mod:`.settlement_plan`) and each attempt (:mod:`.settlement`).
"""

from __future__ import annotations

from mercato.returns.facts import OrderFacts, OrderLineFacts
from mercato.returns.policies import (
    DEFAULT_DAYS,
    DEFAULT_POLICY,
    EffectivePolicy,
    create_policy,
    delete_policy,
    get_policy,
    list_policies,
    order_country,
    policy_for,
    policy_scope,
    update_policy,
)
from mercato.returns.receiving import (
    Inspection,
    LocationRefusesReturns,
    Receipt,
    finish_receipt,
    record_inspection,
    start_receipt,
)
from mercato.returns.records import (
    ReturnFilter,
    customer_return,
    get_by_number,
    get_return,
    new_return_number,
    return_lines,
    search,
    settlements,
    timeline,
)
from mercato.returns.requesting import (
    ExceedsReturnable,
    LineRequest,
    ReturnNotAllowed,
    ReturnRequest,
    order_for_customer,
    order_to_return,
    replacement_prices,
    request_return,
)
from mercato.returns.settlement import (
    Outcome,
    SettlementAttempt,
    attempt_of,
    check_settleable,
    claim_settlement,
    exchange_done,
    exchange_paid,
    finish_attempt,
    keep_pending_refunds,
    mark_settled,
    pending_attempt,
    return_body,
    settle_answer,
    settlement_row,
    start_attempt,
)
from mercato.returns.settlement_plan import (
    RefundExceedsCaptured,
    SettlementPlan,
    SettleRequest,
    check_plan,
    plan_settlement,
)
from mercato.returns.transitions import (
    approve,
    cancel,
    close,
    publish_status,
    reject,
    require_here,
    status_event,
)
from mercato.returns.window import (
    FULFILMENT_EVENTS,
    ReturnWindowExpired,
    check_window,
    record_fulfilment,
    window_start,
)

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_POLICY",
    "FULFILMENT_EVENTS",
    "EffectivePolicy",
    "ExceedsReturnable",
    "Inspection",
    "LineRequest",
    "LocationRefusesReturns",
    "OrderFacts",
    "OrderLineFacts",
    "Outcome",
    "Receipt",
    "RefundExceedsCaptured",
    "ReturnFilter",
    "ReturnNotAllowed",
    "ReturnRequest",
    "ReturnWindowExpired",
    "SettleRequest",
    "SettlementAttempt",
    "SettlementPlan",
    "approve",
    "attempt_of",
    "cancel",
    "check_plan",
    "check_settleable",
    "check_window",
    "claim_settlement",
    "close",
    "create_policy",
    "customer_return",
    "delete_policy",
    "exchange_done",
    "exchange_paid",
    "finish_attempt",
    "finish_receipt",
    "get_by_number",
    "get_policy",
    "get_return",
    "keep_pending_refunds",
    "list_policies",
    "mark_settled",
    "new_return_number",
    "order_country",
    "order_for_customer",
    "order_to_return",
    "pending_attempt",
    "plan_settlement",
    "policy_for",
    "policy_scope",
    "publish_status",
    "record_fulfilment",
    "record_inspection",
    "reject",
    "replacement_prices",
    "request_return",
    "require_here",
    "return_body",
    "return_lines",
    "search",
    "settle_answer",
    "settlement_row",
    "settlements",
    "start_attempt",
    "start_receipt",
    "status_event",
    "timeline",
    "update_policy",
    "window_start",
]
