"""Payment providers: what Mercato asks of a card gateway, a terminal or a courier.

A :class:`Provider` authorises, completes a shopper action (3-D Secure), captures, voids,
refunds and parses its own signed webhooks. Every call carries an idempotency key that
Mercato derives from its own ledger rows, so calling again after a timeout or a crash
returns the first answer and never moves money twice. Providers are always called with
no Mercato transaction open.

Built in:

* ``test_gateway`` (:class:`SimulatedGateway`): a card gateway for development and tests.
  It behaves like a remote service shared by several API processes: its state (tokens,
  charges, idempotency keys) lives in its own tables, changed in short transactions of its
  own, and it enforces capture and refund limits itself. Test card numbers:

  ======================  =====================================================
  4242424242424242        authorised
  4000000000000002        declined (``card_declined``)
  4000000000009995        declined (``insufficient_funds``)
  4000000000003220        3-D Secure: ``requires_action`` with an action URL
  any other Luhn-valid    authorised
  ======================  =====================================================

* ``cash_on_delivery``: authorised for the amount at checkout, captured when the courier
  or staff records the collection.
* ``pos_cash`` and ``pos_card``: card-present at a store terminal, authorised and captured
  at once; ``pos_card`` needs the terminal's approval code.

Gift cards and store credit are balances kept by Mercato itself; they are redeemed in the
caller's transaction with a conditional UPDATE (see ``balances.py``), not through this
protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.db import Database, utcnow
from mercato.manifest import ExtensionPoint
from mercato.money import from_minor, to_minor
from mercato.payments.models import GatewayCharge, GatewayRequest, GatewayToken

SIGNATURE_TOLERANCE_SECONDS = 300


class Outcome(StrEnum):
    AUTHORIZED = "authorized"
    CAPTURED = "captured"  # authorised and captured at once (card present, cash)
    REQUIRES_ACTION = "requires_action"
    DECLINED = "declined"
    SUCCEEDED = "succeeded"  # a capture, void or refund went through
    FAILED = "failed"  # refused, or the provider could not be reached


@dataclass(frozen=True)
class ProviderResult:
    outcome: Outcome
    provider_reference: str | None = None  # the charge at the provider
    transaction_reference: str | None = None  # this capture/refund at the provider
    amount: Decimal | None = None
    action_url: str | None = None
    code: str | None = None
    message: str | None = None
    approval_code: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["amount"] = None if self.amount is None else str(self.amount)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProviderResult:
        amount = data.get("amount")
        return cls(
            outcome=Outcome(data["outcome"]),
            provider_reference=data.get("provider_reference"),
            transaction_reference=data.get("transaction_reference"),
            amount=None if amount is None else Decimal(amount),
            action_url=data.get("action_url"),
            code=data.get("code"),
            message=data.get("message"),
            approval_code=data.get("approval_code"),
            card_brand=data.get("card_brand"),
            card_last4=data.get("card_last4"),
        )


@dataclass(frozen=True)
class AuthorizeRequest:
    payment_id: int
    reference: str
    amount: Decimal
    currency: str
    idempotency_key: str
    token: str | None = None
    approval_code: str | None = None
    customer_id: int | None = None


@dataclass(frozen=True)
class ChargeRequest:
    """A capture, void or refund of an earlier authorisation."""

    payment_id: int
    amount: Decimal
    currency: str
    idempotency_key: str
    # The provider's charge; None when the authorisation's answer was never recorded, in
    # which case the provider finds the charge by the key its authorisation was sent with.
    provider_reference: str | None
    authorization_key: str


@dataclass(frozen=True)
class ActionRequest:
    payment_id: int
    provider_reference: str
    idempotency_key: str
    data: Mapping[str, Any] = field(default_factory=dict)


class WebhookKind(StrEnum):
    ACTION_COMPLETED = "action_completed"
    ACTION_FAILED = "action_failed"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    CHARGEBACK = "chargeback"


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: str  # the provider's own name for it, kept for the record
    kind: WebhookKind
    provider_reference: str
    amount: Decimal | None = None
    currency: str | None = None
    # The idempotency key Mercato sent, when Mercato started the operation.
    transaction_key: str | None = None
    transaction_reference: str | None = None
    reason: str | None = None


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered an error; the outcome is unknown."""


class InvalidSignature(Exception):
    """A webhook whose signature does not verify: it is not from the provider."""


class InvalidWebhook(Exception):
    """A correctly signed webhook that cannot be understood."""


class WebhooksNotSupported(Exception):
    pass


class Provider(Protocol):
    name: str

    def authorize(self, request: AuthorizeRequest) -> ProviderResult: ...

    def complete_action(self, request: ActionRequest) -> ProviderResult: ...

    def capture(self, request: ChargeRequest) -> ProviderResult: ...

    def void(self, request: ChargeRequest) -> ProviderResult: ...

    def refund(self, request: ChargeRequest) -> ProviderResult: ...

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, secret: bytes
    ) -> WebhookEvent: ...


ProviderFactory = Callable[[Database], Provider]


# --- offline providers: cash on delivery, store terminal ---------------------------------------


class _Offline:
    """Methods settled outside any network: the answer is known at once."""

    name = "offline"

    def complete_action(self, request: ActionRequest) -> ProviderResult:
        return ProviderResult(Outcome.FAILED, code="not_supported")

    def capture(self, request: ChargeRequest) -> ProviderResult:
        return ProviderResult(Outcome.SUCCEEDED, request.provider_reference, amount=request.amount)

    def void(self, request: ChargeRequest) -> ProviderResult:
        return ProviderResult(Outcome.SUCCEEDED, request.provider_reference)

    def refund(self, request: ChargeRequest) -> ProviderResult:
        # Cash goes back over the counter or by the courier; a terminal refunds the card.
        return ProviderResult(Outcome.SUCCEEDED, request.provider_reference, amount=request.amount)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> WebhookEvent:
        raise WebhooksNotSupported(self.name)


class CashOnDelivery(_Offline):
    name = "cash_on_delivery"

    def __init__(self, database: Database | None = None) -> None:
        self.database = database

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        return ProviderResult(
            Outcome.AUTHORIZED, f"cod_{request.payment_id}", amount=request.amount
        )


class PosCash(_Offline):
    name = "pos_cash"

    def __init__(self, database: Database | None = None) -> None:
        self.database = database

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        return ProviderResult(Outcome.CAPTURED, f"cash_{request.payment_id}", amount=request.amount)


class PosCard(_Offline):
    name = "pos_card"

    def __init__(self, database: Database | None = None) -> None:
        self.database = database

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        if not request.approval_code:
            return ProviderResult(Outcome.DECLINED, code="approval_code_missing")
        return ProviderResult(
            Outcome.CAPTURED,
            f"pos_{request.payment_id}",
            amount=request.amount,
            approval_code=request.approval_code,
        )


class PaidElsewhere(_Offline):
    """Orders imported from a marketplace or an ERP: the money was taken there, refunds
    are settled there too; Mercato records the amounts so totals and refunds add up."""

    name = "paid_elsewhere"

    def __init__(self, database: Database | None = None) -> None:
        self.database = database

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        return ProviderResult(
            Outcome.CAPTURED, f"external_{request.payment_id}", amount=request.amount
        )


# --- the simulated card gateway -------------------------------------------------------------

TEST_CARD_SCENARIOS = {
    "4242424242424242": "success",
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000003220": "requires_action",
}
SIGNATURE_HEADER = "test-gateway-signature"
ACTION_URL = "https://test-gateway.mercato.invalid/3ds/{charge}"


class CardError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CardToken:
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


def luhn_valid(number: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char)
        if i % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    if number.startswith("35"):
        return "jcb"
    return "unknown"


def _check_card(number: str, exp_month: int, exp_year: int, cvc: str) -> str:
    """The brand of a valid card; CardError naming the field otherwise (never the number)."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        raise CardError("number", "12 to 19 digits")
    if not luhn_valid(number):
        raise CardError("number", "not a valid card number (checksum)")
    if not 1 <= exp_month <= 12:
        raise CardError("exp_month", "1 to 12")
    now = datetime.now(UTC)
    if not 2000 <= exp_year <= 2100 or (exp_year, exp_month) < (now.year, now.month):
        raise CardError("exp_year", "the card has expired")
    brand = card_brand(number)
    digits = 4 if brand == "amex" else 3
    if not cvc.isdigit() or len(cvc) != digits:
        raise CardError("cvc", f"{digits} digits")
    return brand


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def sign_webhook(body: bytes, secret: bytes, timestamp: int | None = None) -> str:
    """The ``Test-Gateway-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_signature(header: str | None, body: bytes, secret: bytes) -> None:
    if not header:
        raise InvalidSignature("missing signature header")
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("malformed signature header") from exc
    if abs(time.time() - ts) > SIGNATURE_TOLERANCE_SECONDS:
        # An old signed message replayed later is refused even though it verifies.
        raise InvalidSignature("signature timestamp outside the tolerance")
    expected = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise InvalidSignature("signature does not match")


_WEBHOOK_KINDS = {
    "charge.authenticated": WebhookKind.ACTION_COMPLETED,
    "charge.authentication_failed": WebhookKind.ACTION_FAILED,
    "charge.captured": WebhookKind.CAPTURED,
    "charge.refunded": WebhookKind.REFUNDED,
    "charge.dispute.created": WebhookKind.CHARGEBACK,
}


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


class SimulatedGateway:
    """The ``test_gateway`` provider: a card gateway simulated in its own tables."""

    name = "test_gateway"

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- tokenisation (the shopper's browser talks to the gateway, not to Mercato's tables)

    def tokenize(self, number: str, exp_month: int, exp_year: int, cvc: str) -> CardToken:
        digits = number.replace(" ", "").replace("-", "")
        brand = _check_card(digits, exp_month, exp_year, cvc)
        scenario = TEST_CARD_SCENARIOS.get(digits, "success")
        token = GatewayToken(
            token=_new_id("tok"),
            brand=brand,
            last4=digits[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            scenario=scenario,
            created_at=utcnow(),
        )
        with self.database.transaction() as session:
            session.add(token)
        return CardToken(token.token, brand, token.last4, exp_month, exp_year)

    # -- the provider protocol

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        return self._once(
            request.idempotency_key, "authorize", lambda s: self._authorize(s, request)
        )

    def complete_action(self, request: ActionRequest) -> ProviderResult:
        succeeded = request.data.get("outcome", "authenticated") == "authenticated"
        return self._once(
            request.idempotency_key,
            "action",
            lambda s: self._authenticate(s, request.provider_reference, succeeded),
        )

    def capture(self, request: ChargeRequest) -> ProviderResult:
        return self._once(request.idempotency_key, "capture", lambda s: self._capture(s, request))

    def void(self, request: ChargeRequest) -> ProviderResult:
        return self._once(request.idempotency_key, "void", lambda s: self._void(s, request))

    def refund(self, request: ChargeRequest) -> ProviderResult:
        return self._once(request.idempotency_key, "refund", lambda s: self._refund(s, request))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> WebhookEvent:
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
        verify_signature(header, body, secret)
        try:
            payload = json.loads(body)
            kind = _WEBHOOK_KINDS[payload["type"]]
            data = payload["data"]
            amount = data.get("amount")
            if len(str(payload["id"])) > 100 or len(str(data["charge"])) > 100:
                raise ValueError("identifier too long")
            return WebhookEvent(
                event_id=str(payload["id"]),
                type=str(payload["type"]),
                kind=kind,
                provider_reference=str(data["charge"]),
                amount=None if amount is None else Decimal(str(amount)),
                currency=_text(data.get("currency"), 3),
                transaction_key=_text(data.get("idempotency_key"), 120),
                transaction_reference=_text(data.get("id"), 100),
                reason=_text(data.get("reason"), 200),
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            raise InvalidWebhook(f"unexpected webhook payload: {exc}") from exc

    # -- what the gateway's operators would do: finish a challenge, send webhooks

    def finish_challenge(self, charge_id: str, succeeded: bool = True) -> ProviderResult:
        """The shopper completed (or failed) the 3-D Secure page at the gateway."""
        return self._once(
            _new_id("challenge"),
            "action",
            lambda s: self._authenticate(s, charge_id, succeeded),
        )

    def charge_state(self, charge_id: str) -> dict[str, Any] | None:
        with self.database.read() as session:
            charge = session.get(GatewayCharge, charge_id)
            if charge is None:
                return None
            return {
                "status": charge.status,
                "currency": charge.currency,
                "authorized": from_minor(charge.authorized_minor, charge.currency),
                "captured": from_minor(charge.captured_minor, charge.currency),
                "refunded": from_minor(charge.refunded_minor, charge.currency),
            }

    def count_charges(self) -> int:
        with self.database.read() as session:
            return int(session.scalar(select(func.count()).select_from(GatewayCharge)) or 0)

    @staticmethod
    def webhook(
        event_type: str, data: Mapping[str, Any], secret: bytes, *, event_id: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery as the gateway sends it: the body and its signed headers."""
        payload = {
            "id": event_id or _new_id("evt"),
            "type": event_type,
            "created": int(time.time()),
            "data": dict(data),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Test-Gateway-Signature": sign_webhook(body, secret)}
        return body, headers

    # -- internals: each operation is one short transaction, answered once per key

    def _once(
        self, key: str, operation: str, work: Callable[[Session], ProviderResult]
    ) -> ProviderResult:
        try:
            with self.database.transaction() as session:
                stored = session.get(GatewayRequest, key)
                if stored is not None:
                    return ProviderResult.from_json(stored.result)
                # Claim the key before the work, so a concurrent duplicate fails on it.
                session.add(
                    GatewayRequest(key=key, operation=operation, result={}, created_at=utcnow())
                )
                session.flush()
                result = work(session)
                session.execute(
                    update(GatewayRequest)
                    .where(GatewayRequest.key == key)
                    .values(result=result.to_json(), charge_id=result.provider_reference)
                )
                return result
        except IntegrityError:
            with self.database.read() as session:
                stored = session.get(GatewayRequest, key)
                if stored is None:
                    raise
                return ProviderResult.from_json(stored.result)

    def _authorize(self, session: Session, request: AuthorizeRequest) -> ProviderResult:
        charge_id = _new_id("ch")
        minor = to_minor(request.amount, request.currency)
        token = session.get(GatewayToken, request.token) if request.token else None
        status, code = "declined", "invalid_token"
        if token is not None:
            used = session.execute(
                update(GatewayToken)
                .where(GatewayToken.token == token.token, GatewayToken.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if not getattr(used, "rowcount", 0):
                code = "token_already_used"
            elif token.scenario == "success":
                status, code = "authorized", ""
            elif token.scenario == "requires_action":
                status, code = "requires_action", ""
            else:
                code = token.scenario
        session.add(
            GatewayCharge(
                id=charge_id,
                token=request.token or "",
                currency=request.currency,
                amount_minor=minor,
                status=status,
                authorized_minor=minor if status == "authorized" else 0,
                authorization_key=request.idempotency_key,
                decline_code=code or None,
                created_at=utcnow(),
            )
        )
        session.flush()
        base = ProviderResult(
            Outcome.DECLINED,
            charge_id,
            card_brand=token.brand if token else None,
            card_last4=token.last4 if token else None,
        )
        if status == "authorized":
            return replace(base, outcome=Outcome.AUTHORIZED, amount=request.amount)
        if status == "requires_action":
            url = ACTION_URL.format(charge=charge_id)
            return replace(base, outcome=Outcome.REQUIRES_ACTION, action_url=url)
        return replace(base, code=code, message=_MESSAGES[code])

    def _authenticate(self, session: Session, charge_id: str, succeeded: bool) -> ProviderResult:
        session.execute(
            update(GatewayCharge)
            .where(GatewayCharge.id == charge_id, GatewayCharge.status == "requires_action")
            .values(
                status="authorized" if succeeded else "declined",
                authorized_minor=GatewayCharge.amount_minor if succeeded else 0,
                decline_code=None if succeeded else "authentication_failed",
            )
        )
        charge = session.get(GatewayCharge, charge_id, populate_existing=True)
        if charge is None:
            return ProviderResult(Outcome.FAILED, charge_id, code="no_such_charge")
        if charge.status == "authorized":
            amount = from_minor(charge.authorized_minor, charge.currency)
            return ProviderResult(Outcome.AUTHORIZED, charge_id, amount=amount)
        if charge.status == "requires_action":
            return ProviderResult(Outcome.REQUIRES_ACTION, charge_id)
        if charge.status == "voided":
            return ProviderResult(Outcome.FAILED, charge_id, code="charge_voided")
        code = charge.decline_code or "card_declined"
        return ProviderResult(Outcome.DECLINED, charge_id, code=code, message=_MESSAGES.get(code))

    def _find(self, session: Session, request: ChargeRequest) -> GatewayCharge | None:
        if request.provider_reference:
            return session.get(GatewayCharge, request.provider_reference)
        return session.scalar(
            select(GatewayCharge).where(
                GatewayCharge.authorization_key == request.authorization_key
            )
        )

    def _capture(self, session: Session, request: ChargeRequest) -> ProviderResult:
        minor = to_minor(request.amount, request.currency)
        charge = self._find(session, request)
        if charge is None:
            return ProviderResult(Outcome.FAILED, code="no_such_charge")
        done = session.execute(
            update(GatewayCharge)
            .where(
                GatewayCharge.id == charge.id,
                GatewayCharge.status == "authorized",
                GatewayCharge.captured_minor + minor <= GatewayCharge.authorized_minor,
            )
            .values(captured_minor=GatewayCharge.captured_minor + minor)
        )
        if not getattr(done, "rowcount", 0):
            code = (
                "amount_exceeds_authorized" if charge.status == "authorized" else "not_capturable"
            )
            return ProviderResult(Outcome.FAILED, charge.id, code=code, message=_MESSAGES[code])
        return ProviderResult(Outcome.SUCCEEDED, charge.id, _new_id("cp"), amount=request.amount)

    def _void(self, session: Session, request: ChargeRequest) -> ProviderResult:
        charge = self._find(session, request)
        if charge is None:
            # Never authorised: there is nothing to release.
            return ProviderResult(Outcome.SUCCEEDED, code="no_such_charge")
        session.execute(
            update(GatewayCharge)
            .where(
                GatewayCharge.id == charge.id,
                GatewayCharge.status.in_(("authorized", "requires_action")),
                GatewayCharge.captured_minor == 0,
            )
            .values(status="voided")
        )
        session.refresh(charge)
        if charge.status in ("voided", "declined"):
            return ProviderResult(Outcome.SUCCEEDED, charge.id)
        code = "charge_captured"
        return ProviderResult(Outcome.FAILED, charge.id, code=code, message=_MESSAGES[code])

    def _refund(self, session: Session, request: ChargeRequest) -> ProviderResult:
        minor = to_minor(request.amount, request.currency)
        charge = self._find(session, request)
        if charge is None:
            return ProviderResult(Outcome.FAILED, code="no_such_charge")
        done = session.execute(
            update(GatewayCharge)
            .where(
                GatewayCharge.id == charge.id,
                GatewayCharge.refunded_minor + minor <= GatewayCharge.captured_minor,
            )
            .values(refunded_minor=GatewayCharge.refunded_minor + minor)
        )
        if not getattr(done, "rowcount", 0):
            code = "amount_exceeds_captured"
            return ProviderResult(Outcome.FAILED, charge.id, code=code, message=_MESSAGES[code])
        return ProviderResult(Outcome.SUCCEEDED, charge.id, _new_id("re"), amount=request.amount)


_MESSAGES = {
    "invalid_token": "the card token is unknown",
    "token_already_used": "the card token was already used for another charge",
    "card_declined": "the card was declined",
    "insufficient_funds": "the card has insufficient funds",
    "authentication_failed": "3-D Secure authentication failed",
    "amount_exceeds_authorized": "the amount exceeds what is left of the authorisation",
    "not_capturable": "the charge is not authorised",
    "charge_captured": "the charge is captured: refund it instead",
    "amount_exceeds_captured": "the amount exceeds what is left to refund",
}


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderSpec:
    factory: ProviderFactory
    # A provider holding a balance the shop controls (points): refunds reach it last,
    # after the tenders that moved real money, like gift cards and store credit.
    refund_last: bool = False


# Payment methods by name: the built-in ones here, others contributed by their domain's
# manifest (loyalty points) or put in place by a plug-in with :func:`register_provider`.
PROVIDERS: ExtensionPoint[ProviderSpec] = ExtensionPoint("payment providers")
for _built_in in (SimulatedGateway, CashOnDelivery, PosCash, PosCard, PaidElsewhere):
    PROVIDERS.install(PROVIDERS(_built_in.name, ProviderSpec(_built_in)), owner="payments")


def register_provider(name: str, factory: ProviderFactory, *, refund_last: bool = False) -> None:
    """Add (or replace) a provider, e.g. a real gateway's adapter."""
    PROVIDERS.replace(name, ProviderSpec(factory, refund_last))


def refund_last_methods() -> frozenset[str]:
    return frozenset(name for name, spec in PROVIDERS.items() if spec.refund_last)


def provider_names() -> frozenset[str]:
    return frozenset(PROVIDERS)


@dataclass(frozen=True)
class ProviderInfo:
    """What an operator can see of a registered provider. Its webhook secret derives from
    the installation secret (``keys.webhook_secret``) and is never shown."""

    name: str
    refund_last: bool


def provider_infos() -> list[ProviderInfo]:
    """The registered payment providers by name (built in, from a domain, or a plug-in)."""
    return [ProviderInfo(name, PROVIDERS[name].refund_last) for name in sorted(PROVIDERS)]


def get_provider(name: str, database: Database) -> Provider:
    spec = PROVIDERS.get(name)
    if spec is None:
        raise LookupError(f"no payment provider {name!r}")
    return spec.factory(database)
