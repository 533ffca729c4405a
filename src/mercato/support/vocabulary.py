"""The words of support cases: statuses and their transitions, priorities and default SLAs,
message directions, contact channels and the limits on a case."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

Clock = Callable[[], datetime]


class CaseStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING_CUSTOMER = "pending_customer"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(StrEnum):
    INBOUND = "inbound"  # from the customer
    OUTBOUND = "outbound"  # from staff to the customer
    INTERNAL = "internal"  # a note between staff, never shown to the customer


class ContactChannel(StrEnum):
    """How a message reached us (or left): not the sales channel, the medium."""

    WEB = "web"
    APP = "app"
    EMAIL = "email"
    PHONE = "phone"
    STORE = "store"
    SOCIAL = "social"
    MARKETPLACE = "marketplace"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


S = CaseStatus

TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING_CUSTOMER, S.RESOLVED, S.CLOSED}),
    S.PENDING_CUSTOMER: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    # A resolved case reopens when the customer writes again; a closed one is final.
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}

ACTIVE = frozenset({S.NEW, S.OPEN, S.PENDING_CUSTOMER})
# The SLA clock runs only while the case waits on us, not on the customer.
RUNNING = frozenset({S.NEW, S.OPEN})

# Minutes to first response and to resolution; rows in support_sla_policies override them.
DEFAULT_SLA: dict[Priority, tuple[int, int]] = {
    Priority.URGENT: (60, 8 * 60),
    Priority.HIGH: (4 * 60, 24 * 60),
    Priority.NORMAL: (8 * 60, 3 * 24 * 60),
    Priority.LOW: (24 * 60, 5 * 24 * 60),
}
MAX_SLA_MINUTES = 365 * 24 * 60

# The contact channel of a case a shopper opens through a sales channel of this type.
CONTACT_FOR_CHANNEL_TYPE: dict[str, ContactChannel] = {
    "web": ContactChannel.WEB,
    "app": ContactChannel.APP,
    "pos": ContactChannel.STORE,
    "call_centre": ContactChannel.PHONE,
    "marketplace": ContactChannel.MARKETPLACE,
}

MAX_ORDERS_PER_CASE = 20
MAX_TAGS = 20
OVERVIEW_CASES = 5
OVERVIEW_MESSAGES = 3
OVERVIEW_ORDERS = 5
