"""The problems payment use cases answer with when a provider refuses or cannot be reached."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mercato.errors import Problem
from mercato.payments.models import Payment, PaymentStatus


class PaymentDeclined(Problem):
    status = 402
    code = "payment-declined"
    title = "The payment provider refused the operation"


class ProviderUnavailableProblem(Problem):
    status = 503
    code = "provider-unavailable"
    title = "The payment provider could not be reached"


def decline_details(tenders: Sequence[Payment]) -> dict[str, Any]:
    """Why payments were refused, for a 402: ``provider_code`` (the provider's reason code
    of the first refused tender, e.g. ``card_declined``, ``insufficient_points``) and
    ``declines``, one entry per refused tender."""
    refused = [
        p for p in tenders if p.status in (PaymentStatus.DECLINED.value, PaymentStatus.FAILED.value)
    ]
    return {
        "provider_code": refused[0].failure_code if refused else None,
        "declines": [
            {
                "payment_id": p.id,
                "method": p.method,
                "status": p.status,
                "provider_code": p.failure_code,
                "message": p.failure_message,
            }
            for p in refused
        ],
    }
