"""Payments, their transaction ledger, refunds, gift cards, store credit and the simulated
gateway's own state. Amounts are integers in the currency's minor unit (``*_minor``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, JSONType, UTCDateTime, utcnow
from mercato.money import from_minor


class Method(StrEnum):
    """How a tender is paid; each method is served by the provider of the same name."""

    TEST_GATEWAY = "test_gateway"
    CASH_ON_DELIVERY = "cash_on_delivery"
    POS_CASH = "pos_cash"
    POS_CARD = "pos_card"
    GIFT_CARD = "gift_card"
    STORE_CREDIT = "store_credit"


# Tenders paid from a balance kept in Mercato: redeemed in the caller's transaction.
BALANCE_METHODS = frozenset({Method.GIFT_CARD.value, Method.STORE_CREDIT.value})


class PaymentStatus(StrEnum):
    PENDING = "pending"  # recorded, the provider not asked yet
    REQUIRES_ACTION = "requires_action"  # the shopper must authenticate (3-D Secure)
    AUTHORIZED = "authorized"
    PARTIALLY_CAPTURED = "partially_captured"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDING = "voiding"  # a void is with the provider
    VOIDED = "voided"
    DECLINED = "declined"
    FAILED = "failed"  # the provider could not be reached or answered an error


class TxnKind(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    CHARGEBACK = "chargeback"


class TxnStatus(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Payment(Base):
    """One tender of a checkout (a card, a gift card, cash...) and where its money stands.

    ``captured`` and ``refunded`` count only what the provider confirmed; the ``*_pending``
    columns hold amounts reserved by a capture or refund that is with the provider, so the
    limits below hold while a provider call is in flight.
    """

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("authorized_minor >= 0", name="authorized_not_negative"),
        CheckConstraint("captured_minor >= 0", name="captured_not_negative"),
        CheckConstraint("capture_pending_minor >= 0", name="capture_pending_not_negative"),
        CheckConstraint("refunded_minor >= 0", name="refunded_not_negative"),
        CheckConstraint("refund_pending_minor >= 0", name="refund_pending_not_negative"),
        CheckConstraint("charged_back_minor >= 0", name="charged_back_not_negative"),
        CheckConstraint(
            "captured_minor + capture_pending_minor <= authorized_minor",
            name="captured_within_authorized",
        ),
        CheckConstraint(
            "refunded_minor + refund_pending_minor + charged_back_minor <= captured_minor",
            name="refunded_within_captured",
        ),
        Index("ix_payments_reference", "reference", "position"),
        Index("ix_payments_provider_reference", "method", "provider_reference"),
        Index("ix_payments_order", "order_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # What the payment is for: the checkout's (later the order's) reference.
    reference: Mapped[str] = mapped_column(String(64))
    # The order paid for (the order whose number is ``reference``), to find its payments.
    order_id: Mapped[int | None] = mapped_column(BigId)
    position: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    authorized_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    capture_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_pending_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_back_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_id: Mapped[int | None] = mapped_column(BigId)
    channel_id: Mapped[int | None] = mapped_column(BigId)
    location_id: Mapped[int | None] = mapped_column(BigId)
    # The charge at the provider (``ch_...``) once it answered.
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    card_token: Mapped[str | None] = mapped_column(String(64))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    approval_code: Mapped[str | None] = mapped_column(String(20))
    gift_card_id: Mapped[int | None] = mapped_column(ForeignKey("gift_cards.id"))
    store_credit_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("store_credit_accounts.id")
    )
    action_url: Mapped[str | None] = mapped_column(Text)
    # Given to the shopper's client to complete an action on this payment (like a nonce):
    # payment ids are sequential, so the id alone must not be enough.
    client_secret: Mapped[str] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(50))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The last successful capture: refunds go to the most recently charged tender first.
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    @property
    def authorized(self) -> Decimal:
        return from_minor(self.authorized_minor, self.currency)

    @property
    def captured(self) -> Decimal:
        return from_minor(self.captured_minor, self.currency)

    @property
    def refunded(self) -> Decimal:
        return from_minor(self.refunded_minor, self.currency)

    @property
    def charged_back(self) -> Decimal:
        return from_minor(self.charged_back_minor, self.currency)

    @property
    def capturable(self) -> Decimal:
        left = self.authorized_minor - self.captured_minor - self.capture_pending_minor
        return from_minor(left, self.currency)

    @property
    def refundable(self) -> Decimal:
        return from_minor(refundable_minor(self), self.currency)


def refundable_minor(payment: Payment) -> int:
    if payment.status in (PaymentStatus.VOIDED, PaymentStatus.VOIDING):
        return 0
    return max(
        0,
        payment.captured_minor
        - payment.refunded_minor
        - payment.refund_pending_minor
        - payment.charged_back_minor,
    )


class PaymentTransaction(Base):
    """The payment's ledger: every authorisation, capture, void, refund and chargeback.

    Captures, voids and refunds are written ``pending`` before the provider is called and
    completed afterwards; ``provider_key`` is the idempotency key the provider got, so
    calling it again with the same key after a crash cannot move money twice.
    """

    __tablename__ = "payment_transactions"
    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        Index("ix_payment_transactions_payment", "payment_id", "id"),
        Index("ix_payment_transactions_status", "status", "created_at"),
        Index("ix_payment_transactions_provider_key", "provider_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("payment_refunds.id"))
    provider_key: Mapped[str | None] = mapped_column(String(120))
    # The provider's id of this capture/refund (``re_...``), when it has one.
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(50))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    # e.g. the status a payment returns to if its void fails.
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)


class Refund(Base):
    """Money returned on one payment (a refund of a split tender has one per tender)."""

    __tablename__ = "payment_refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        Index("ix_payment_refunds_payment", "payment_id"),
        Index("ix_payment_refunds_reference", "reference"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(30))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(50))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)


class ProviderWebhookReceipt(Base):
    """Provider events already applied: a redelivered event id is answered, not re-applied."""

    __tablename__ = "payment_webhook_receipts"

    provider: Mapped[str] = mapped_column(String(30), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(30))
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- gift cards and store credit --------------------------------------------------------------


class GiftCard(Base):
    """A gift card. The code is never stored: only its keyed hash and last four characters.

    ``balance`` always equals the sum of the card's ledger (``gift_card_transactions``).
    """

    __tablename__ = "gift_cards"
    __table_args__ = (
        CheckConstraint("balance_minor >= 0", name="balance_not_negative"),
        CheckConstraint("initial_minor > 0", name="initial_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4))
    currency: Mapped[str] = mapped_column(String(3))
    initial_minor: Mapped[int] = mapped_column(BigInteger)
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    customer_id: Mapped[int | None] = mapped_column(BigId)
    note: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def balance(self) -> Decimal:
        return from_minor(self.balance_minor, self.currency)

    @property
    def initial(self) -> Decimal:
        return from_minor(self.initial_minor, self.currency)


class GiftCardTransaction(Base):
    """The gift card ledger: issue, redemption, void, refund, adjustment (signed amounts)."""

    __tablename__ = "gift_card_transactions"
    __table_args__ = (Index("ix_gift_card_transactions_card", "gift_card_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    gift_card_id: Mapped[int] = mapped_column(ForeignKey("gift_cards.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(64))
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    @property
    def balance_after(self) -> Decimal:
        return from_minor(self.balance_after_minor, self.currency)


class StoreCreditAccount(Base):
    """A customer's store credit in one currency; ``balance`` = the sum of its ledger."""

    __tablename__ = "store_credit_accounts"
    __table_args__ = (
        CheckConstraint("balance_minor >= 0", name="balance_not_negative"),
        UniqueConstraint("customer_id", "currency"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(String(3))
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def balance(self) -> Decimal:
        return from_minor(self.balance_minor, self.currency)


class StoreCreditTransaction(Base):
    __tablename__ = "store_credit_transactions"
    __table_args__ = (Index("ix_store_credit_transactions_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("store_credit_accounts.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(EncryptedString())  # typed by staff: encrypted
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    @property
    def balance_after(self) -> Decimal:
        return from_minor(self.balance_after_minor, self.currency)


# --- the simulated card gateway -------------------------------------------------------------
# These tables stand for a remote service's database: only ``providers.SimulatedGateway`` uses
# them, always in short transactions of its own, never inside a Mercato transaction.


class GatewayToken(Base):
    """A tokenised test card: brand, last four and the scenario its number selects."""

    __tablename__ = "test_gateway_tokens"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    scenario: Mapped[str] = mapped_column(String(30))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewayCharge(Base):
    __tablename__ = "test_gateway_charges"
    __table_args__ = (
        CheckConstraint("captured_minor <= authorized_minor", name="captured_within_authorized"),
        CheckConstraint("refunded_minor <= captured_minor", name="refunded_within_captured"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    authorized_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    authorization_key: Mapped[str] = mapped_column(String(120), unique=True)
    decline_code: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewayRequest(Base):
    """The gateway's idempotency keys: a repeated request gets the first answer back."""

    __tablename__ = "test_gateway_requests"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    operation: Mapped[str] = mapped_column(String(20))
    charge_id: Mapped[str | None] = mapped_column(String(40))
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
