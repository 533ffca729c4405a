"""The payments domain's events: providers' answers, captures, voids, refunds and
chargebacks of payments; gift cards issued, disabled and enabled; store credit moving.

Amounts are decimals in the payment's (card's, account's) currency with its minor-unit
places (``"60.00"``, ``"3000"``), as the API shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class PaymentFacts(DomainEvent):
    """What every payment event says about the payment."""

    AGGREGATE = "payment"

    payment_id: int
    reference: str  # the checkout's (later the order's) reference
    order_id: int | None
    method: str
    currency: str
    amount: Decimal


# --- the provider's answer to an authorisation (payment.<status>) -----------------------------


@dataclass(frozen=True, kw_only=True)
class PaymentAuthorized(PaymentFacts):
    """The provider authorised the payment: the money is held until it is captured."""

    TYPE = "payment.authorized"

    status: str


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(PaymentFacts):
    """Money was taken: at authorisation, by a capture, at the provider, or as a balance tender.

    ``status`` is set when the payment was captured as it was authorised or recorded (an
    external payment); ``captured`` when an amount was captured (a capture, a gift card or
    store credit taken); the other one is null.
    """

    TYPE = "payment.captured"

    status: str | None = None
    captured: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentRequiresAction(PaymentFacts):
    """The shopper must act (3-D Secure) before the provider answers; ``action_url`` leads there."""

    TYPE = "payment.requires_action"

    status: str
    action_url: str | None


@dataclass(frozen=True, kw_only=True)
class PaymentAuthorizationDeclined(PaymentFacts):
    """The provider declined the payment (``failure_code`` says why)."""

    TYPE = "payment.declined"

    status: str
    failure_code: str | None


@dataclass(frozen=True, kw_only=True)
class PaymentAuthorizationFailed(PaymentFacts):
    """The provider could not be reached or answered an error: the payment failed."""

    TYPE = "payment.failed"

    status: str
    failure_code: str | None


# The event a provider's answer publishes, by the payment status it leads to.
AUTHORIZATION_EVENTS: dict[str, type[PaymentFacts]] = {
    "authorized": PaymentAuthorized,
    "captured": PaymentCaptured,
    "requires_action": PaymentRequiresAction,
    "declined": PaymentAuthorizationDeclined,
    "failed": PaymentAuthorizationFailed,
}


# --- captures, voids, refunds and chargebacks --------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PaymentCaptureFailed(PaymentFacts):
    """The provider refused to capture ``requested`` of an authorised payment."""

    TYPE = "payment.capture_failed"

    failure_code: str | None
    requested: Decimal


@dataclass(frozen=True, kw_only=True)
class PaymentVoided(PaymentFacts):
    """The authorisation was released (or a card-present sale reversed, a balance tender
    given back): the payment holds no money."""

    TYPE = "payment.voided"

    # Always null: voids the provider answered later have carried the key, the others not.
    failure_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentVoidFailed(PaymentFacts):
    """The provider refused to void the payment: it keeps its previous status."""

    TYPE = "payment.void_failed"

    failure_code: str | None


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(PaymentFacts):
    """Money (``refunded``) went back to the payment: by Mercato's refund or at the provider."""

    TYPE = "payment.refunded"

    refund_id: int | None
    refunded: Decimal
    failure_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentRefundFailed(PaymentFacts):
    """The provider refused a refund of ``refunded``: the money stays captured."""

    TYPE = "payment.refund_failed"

    refund_id: int | None
    refunded: Decimal
    failure_code: str | None


@dataclass(frozen=True, kw_only=True)
class PaymentChargedBack(PaymentFacts):
    """The cardholder's bank took ``charged_back`` back: that part can no longer be refunded."""

    TYPE = "payment.charged_back"

    charged_back: Decimal
    reason: str | None  # the provider's reason code


# --- gift cards and store credit -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GiftCardFacts(DomainEvent):
    AGGREGATE = "gift_card"

    gift_card_id: int


@dataclass(frozen=True, kw_only=True)
class GiftCardIssued(GiftCardFacts):
    """Staff issued a gift card worth ``amount`` (its code is never in an event)."""

    TYPE = "gift_card.issued"

    currency: str
    amount: Decimal
    last4: str
    customer_id: int | None


@dataclass(frozen=True, kw_only=True)
class GiftCardDisabled(GiftCardFacts):
    """Staff disabled a gift card (lost, fraud): it cannot be spent; its balance is kept."""

    TYPE = "gift_card.disabled"


@dataclass(frozen=True, kw_only=True)
class GiftCardEnabled(GiftCardFacts):
    """Staff enabled a disabled gift card again."""

    TYPE = "gift_card.enabled"


@dataclass(frozen=True, kw_only=True)
class StoreCreditChanged(DomainEvent):
    """A customer's store credit in one currency moved by ``amount`` (negative when taken)
    to ``balance``; ``kind`` says why (credit, redeem, refund, void, adjust)."""

    TYPE = "store_credit.changed"
    AGGREGATE = "customer"

    customer_id: int
    currency: str
    kind: str
    amount: Decimal
    balance: Decimal
    reference: str | None
