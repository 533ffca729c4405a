"""Payment use cases, split at every provider call into explicit transactions.

No database transaction or lock is ever held while a provider is called:

* **Checkout** calls, in order: :func:`create_payments` inside its first transaction (one
  ``pending`` payment per tender; gift cards and store credit are redeemed right there with
  a conditional UPDATE), :func:`authorize_pending` with no transaction open (provider
  calls only, nothing written), :func:`record_outcomes` inside its second transaction, and
  :func:`void_payments` to compensate when the checkout fails after paying.
* **Capture, void and refund** (:func:`capture`, :func:`void`, :func:`refund`,
  :func:`refund_reference`) follow one pattern. Transaction A writes a ``pending`` ledger
  transaction and reserves the amount with a conditional UPDATE
  (``captured + capture_pending + :amount <= authorized``,
  ``refunded + refund_pending + charged_back + :amount <= captured``) and commits; the
  provider is called with no transaction open, with an idempotency key stored on the
  ledger row; transaction B marks the ledger row succeeded (moving the reserved amount into
  ``captured``/``refunded``) or failed (giving the reservation back).

**Reconciliation.** A crash, or a provider that cannot be reached, between A and B leaves a
visible ``pending`` ledger row with its amount still reserved: nothing can over-capture or
over-refund meanwhile. :func:`reconcile` finds pending rows older than a few minutes and
calls the provider again with the *same* idempotency key (the provider answers with the
first result, or performs the operation once if it never got it), then runs B. The
provider's webhook for the same operation carries that key too, so whichever arrives
first completes the row and the other finds nothing left to do; a retry of the request
with the same ``Idempotency-Key`` also asks the provider again. Operations run
:func:`reconcile` from a scheduler through ``POST /v1/payments/reconcile`` (it must run
with no transaction open, so it is not an in-process periodic job, which gets a session).

**Refunding a split tender** (:func:`split_refund`): money tenders (cards, cash, cash on
delivery) are refunded before balance tenders (gift card, store credit), and within each
group the most recently charged tender first; no tender gets more than it still has
captured and not refunded, and a refund larger than the total refundable is refused. A
shopper who paid part with a gift card and part by card and returns one item gets money
back on the card first: consumer rules in many markets require that money paid is refunded
as money unless the customer agrees otherwise, and it is also what shoppers expect.
Store credit is never chosen automatically; a refund "to store credit" is an explicit
:func:`credit_store` by the returns process.

This module is the domain's public face; the use cases live in its sibling modules:
``reading`` (payments, ledger rows, refunds, totals), ``tenders`` (checkout step 1),
``authorization`` (steps 2 and 3, the shopper's 3-D Secure action), ``voids`` (voids and
checkout compensation), ``captures``, ``refunds``, ``pending_operations`` (the provider call
and transaction B), ``provider_webhooks``, ``reconciliation``; gift cards and store credit
in ``balances`` (one ledger mechanism, ``balance_book``) and ``balance_tenders``.
"""

from __future__ import annotations

from mercato.payments.authorization import (
    ProviderOutcome,
    authorize_pending,
    complete_action,
    record_outcomes,
)
from mercato.payments.balances import (
    GiftCardNotUsable,
    InsufficientBalance,
    IssuedGiftCard,
    adjust_store_credit,
    checked_amount,
    checked_currency,
    credit_store,
    find_usable_gift_card,
    get_gift_card,
    issue_gift_card,
    set_gift_card_status,
    store_credit_accounts,
    store_credit_balance,
)
from mercato.payments.captures import capture
from mercato.payments.problems import (
    PaymentDeclined,
    ProviderUnavailableProblem,
    decline_details,
)
from mercato.payments.provider_webhooks import WebhookOutcome, apply_webhook
from mercato.payments.providers import ProviderInfo, provider_infos
from mercato.payments.reading import (
    UNSETTLED,
    ReferenceTotals,
    get_payment,
    get_payments,
    get_refunds,
    list_payments,
    payment_refunds,
    payment_transactions,
    payments_for_reference,
    totals_for_reference,
    unsettled_for_references,
)
from mercato.payments.reconciliation import RECONCILE_AFTER, pending_transactions, reconcile
from mercato.payments.records import CAPTURABLE, authorization_key
from mercato.payments.refunds import (
    RefundSource,
    allocate_refund,
    refund,
    refund_order,
    refund_reference,
    split_refund,
)
from mercato.payments.tenders import (
    APPROVAL_CODE_CHARS,
    CHANNEL_TYPES,
    RECORD_ONLY_METHODS,
    TenderRequest,
    accepted_methods,
    create_payments,
    record_external_payment,
)
from mercato.payments.voids import POS_METHODS, UNCAPTURED, void, void_payments

__all__ = [
    "APPROVAL_CODE_CHARS",
    "CAPTURABLE",
    "CHANNEL_TYPES",
    "POS_METHODS",
    "RECONCILE_AFTER",
    "RECORD_ONLY_METHODS",
    "UNCAPTURED",
    "UNSETTLED",
    "GiftCardNotUsable",
    "InsufficientBalance",
    "IssuedGiftCard",
    "PaymentDeclined",
    "ProviderInfo",
    "ProviderOutcome",
    "ProviderUnavailableProblem",
    "ReferenceTotals",
    "RefundSource",
    "TenderRequest",
    "WebhookOutcome",
    "accepted_methods",
    "adjust_store_credit",
    "allocate_refund",
    "apply_webhook",
    "authorization_key",
    "authorize_pending",
    "capture",
    "checked_amount",
    "checked_currency",
    "complete_action",
    "create_payments",
    "credit_store",
    "decline_details",
    "find_usable_gift_card",
    "get_gift_card",
    "get_payment",
    "get_payments",
    "get_refunds",
    "issue_gift_card",
    "list_payments",
    "payment_refunds",
    "payment_transactions",
    "payments_for_reference",
    "pending_transactions",
    "provider_infos",
    "reconcile",
    "record_external_payment",
    "record_outcomes",
    "refund",
    "refund_order",
    "refund_reference",
    "set_gift_card_status",
    "split_refund",
    "store_credit_accounts",
    "store_credit_balance",
    "totals_for_reference",
    "unsettled_for_references",
    "void",
    "void_payments",
]
