"""Customer support: cases, one message thread per case from every channel, SLAs, ratings.

A case belongs to a customer (or, for a guest, keeps an email) and may be about orders.
Its messages come from any contact channel (app chat, email, phone call notes, a store,
social media) into one thread; internal notes in that thread never reach the customer.

Concurrency: every change to a case locks its row first (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite serialises writing transactions with ``BEGIN IMMEDIATE``), then
decides against what it read and writes. Two agents, the customer and the SLA job acting
on one case at once are applied one after the other, each against the other's result.
Ratings and SLA breaches are single conditional UPDATEs.

Every function takes an explicit ``now`` (default: the real clock) so that SLA due times
and breaches can be tested and simulated.

This module is the domain's public face; the use cases live in its sibling modules:
``vocabulary`` (statuses, priorities, channels, limits), ``inputs`` (drafts and their
validation), ``reading`` (cases, threads, search), ``opening``, ``thread`` (messages),
``lifecycle`` (status transitions), ``edits`` (staff changes), ``sla`` (policies, due
times, breaches), ``satisfaction`` and ``overview`` (the agent console).
"""

from __future__ import annotations

from mercato.support.actors import customer_actor, guest_actor
from mercato.support.case_events import case_event
from mercato.support.edits import link_order, update_case
from mercato.support.inputs import CaseChanges, CaseDraft, MessageDraft, OrderRef, normalise_tags
from mercato.support.lifecycle import transition
from mercato.support.opening import new_case_number, open_case
from mercato.support.overview import Overview, customer_overview
from mercato.support.reading import (
    CaseFilter,
    case_orders,
    cases_for_order,
    customer_case,
    customer_cases,
    get_by_number,
    get_case,
    last_messages,
    messages,
    search_cases,
)
from mercato.support.satisfaction import SatisfactionRow, average_satisfaction, rate
from mercato.support.sla import (
    Sla,
    is_overdue,
    mark_sla_breaches,
    set_sla_policy,
    sla_for,
    sla_policies,
)
from mercato.support.thread import add_message
from mercato.support.vocabulary import (
    ACTIVE,
    CONTACT_FOR_CHANNEL_TYPE,
    DEFAULT_SLA,
    MAX_ORDERS_PER_CASE,
    MAX_SLA_MINUTES,
    MAX_TAGS,
    OVERVIEW_CASES,
    OVERVIEW_MESSAGES,
    OVERVIEW_ORDERS,
    RUNNING,
    TRANSITIONS,
    CaseStatus,
    Clock,
    ContactChannel,
    Direction,
    Period,
    Priority,
)

__all__ = [
    "ACTIVE",
    "CONTACT_FOR_CHANNEL_TYPE",
    "DEFAULT_SLA",
    "MAX_ORDERS_PER_CASE",
    "MAX_SLA_MINUTES",
    "MAX_TAGS",
    "OVERVIEW_CASES",
    "OVERVIEW_MESSAGES",
    "OVERVIEW_ORDERS",
    "RUNNING",
    "TRANSITIONS",
    "CaseChanges",
    "CaseDraft",
    "CaseFilter",
    "CaseStatus",
    "Clock",
    "ContactChannel",
    "Direction",
    "MessageDraft",
    "OrderRef",
    "Overview",
    "Period",
    "Priority",
    "SatisfactionRow",
    "Sla",
    "add_message",
    "average_satisfaction",
    "case_event",
    "case_orders",
    "cases_for_order",
    "customer_actor",
    "customer_case",
    "customer_cases",
    "customer_overview",
    "get_by_number",
    "get_case",
    "guest_actor",
    "is_overdue",
    "last_messages",
    "link_order",
    "mark_sla_breaches",
    "messages",
    "new_case_number",
    "normalise_tags",
    "open_case",
    "rate",
    "search_cases",
    "set_sla_policy",
    "sla_for",
    "sla_policies",
    "transition",
    "update_case",
]
