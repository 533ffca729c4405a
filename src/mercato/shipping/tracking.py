"""Tracking: a parcel's history, from the API or a carrier's signed webhook.

Every recorded scan publishes ``shipment.tracking_updated`` through the outbox; the label's
status follows its latest scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.auth.service import audit
from mercato.db import utcnow
from mercato.errors import NotFound, Unauthorized, UnprocessableState, ValidationProblem
from mercato.events import publish
from mercato.shipping._carrier_context import _adapter
from mercato.shipping._checks import _aware
from mercato.shipping.carrier_setup import carrier_by_code, get_carrier
from mercato.shipping.carriers import (
    CarrierInputError,
    InvalidSignature,
    TrackingEvent,
    TrackingStatus,
)
from mercato.shipping.event_types import RecordedScan, TrackingUpdated
from mercato.shipping.label_records import get_label, label_by_tracking_number, label_facts
from mercato.shipping.models import ShippingLabel, TrackingEventRecord

# Carriers' clocks drift and time zones get mixed up; a scan further ahead is a bug.
MAX_EVENT_CLOCK_SKEW = timedelta(days=1)


@dataclass(frozen=True)
class WebhookResult:
    received: int
    recorded: int
    duplicates: int
    ignored: list[str]


def track(session: Session, tracking_number: str) -> list[TrackingEvent]:
    """The parcel's history as its carrier integration reports it, oldest first."""
    label = label_by_tracking_number(session, tracking_number)
    carrier = get_carrier(session, label.carrier_id)
    return _adapter(session, carrier).track(label.tracking_number)


def _check_event(
    status: TrackingStatus | str, at: datetime, location: str | None, description: str | None
) -> TrackingStatus:
    try:
        parsed = TrackingStatus(status)
    except ValueError as exc:
        raise ValidationProblem.field(
            "body.status", "one of " + ", ".join(s.value for s in TrackingStatus)
        ) from exc
    _aware(at, "body.occurred_at")
    if at > utcnow() + MAX_EVENT_CLOCK_SKEW:
        raise ValidationProblem.field("body.occurred_at", "more than a day in the future")
    if location is not None and len(location) > 200:
        raise ValidationProblem.field("body.location", "at most 200 characters")
    if description is not None and len(description) > 2000:
        raise ValidationProblem.field("body.description", "at most 2000 characters")
    return parsed


def _insert_event(session: Session, record: TrackingEventRecord) -> bool:
    """False when the carrier's event id is already recorded (a retried webhook)."""
    if record.external_id is not None:
        seen = session.scalar(
            select(TrackingEventRecord.id).where(
                TrackingEventRecord.carrier_id == record.carrier_id,
                TrackingEventRecord.external_id == record.external_id,
            )
        )
        if seen is not None:
            return False
    try:
        # A concurrent duplicate loses on the unique constraint; only its savepoint rolls back.
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError:
        return False
    return True


def record_tracking_event(
    session: Session,
    tracking_number: str,
    status: TrackingStatus | str,
    at: datetime,
    location: str | None = None,
    description: str | None = None,
    *,
    event_id: str | None = None,
    source: str = "api",
    actor: Principal | None = None,
) -> TrackingEventRecord | None:
    """Record a scan and publish ``shipment.tracking_updated``.

    The label's status follows the latest event by ``at`` (events may arrive out of
    order). With an ``event_id`` already recorded for this carrier nothing happens and
    None is returned.
    """
    parsed = _check_event(status, at, location, description)
    label = label_by_tracking_number(session, tracking_number)
    if label.voided_at is not None:
        raise UnprocessableState(f"label {label.tracking_number} was voided")
    record = _event_record(label, parsed, at, location, description, event_id, source)
    if not _insert_event(session, record):
        return None
    label = _follow_latest_event(session, label.id, parsed, at)
    if actor is not None:
        audit(
            session,
            actor,
            "shipping.tracking_recorded",
            "shipping_label",
            label.id,
            {"status": parsed.value, "occurred_at": at.isoformat(), "event_id": event_id},
        )
    # The carrier's description is left out: it can name who signed for the parcel.
    scan = RecordedScan(
        id=record.id,
        status=parsed.value,
        occurred_at=at,
        location=location,
        source=source,
        carrier_event_id=event_id,
    )
    publish(session, TrackingUpdated(**label_facts(label), event=scan))
    return record


def _event_record(
    label: ShippingLabel,
    status: TrackingStatus,
    at: datetime,
    location: str | None,
    description: str | None,
    event_id: str | None,
    source: str,
) -> TrackingEventRecord:
    return TrackingEventRecord(
        label_id=label.id,
        carrier_id=label.carrier_id,
        tracking_number=label.tracking_number,
        status=status.value,
        occurred_at=at,
        location=location,
        description=description,
        source=source,
        external_id=event_id,
        created_at=utcnow(),
    )


def _follow_latest_event(
    session: Session, label_id: int, status: TrackingStatus, at: datetime
) -> ShippingLabel:
    """The label with its status moved to this event's, unless a later event is recorded."""
    # Latest event wins, decided in the WHERE clause so concurrent scans cannot regress it.
    session.execute(
        update(ShippingLabel)
        .where(
            ShippingLabel.id == label_id,
            or_(ShippingLabel.status_at.is_(None), ShippingLabel.status_at <= at),
        )
        .values(status=status.value, status_at=at)
    )
    return get_label(session, label_id)


def receive_webhook(
    session: Session, carrier_code: str, headers: Mapping[str, str], body: bytes
) -> WebhookResult:
    """Verify and record a carrier's tracking webhook.

    A bad signature is a 401 and a malformed payload a 422, both before anything is
    written. Events for tracking numbers that are not this carrier's labels, or for voided
    labels, are skipped and listed in ``ignored`` (retrying would not help).
    """
    carrier = carrier_by_code(session, carrier_code)
    if carrier is None:
        raise NotFound(f"carrier {carrier_code} not found")
    try:
        events = _adapter(session, carrier).parse_webhook(headers, body)
    except InvalidSignature as exc:
        raise Unauthorized(str(exc), code="invalid-signature") from exc
    except CarrierInputError as exc:
        raise ValidationProblem.field(exc.field, exc.reason) from exc
    labels = _labels_by_number(session, carrier.id, {e.tracking_number for e in events})
    recorded = duplicates = 0
    ignored: list[str] = []
    for event in events:
        label = labels.get(event.tracking_number.strip().upper())
        if label is None or label.voided_at is not None:
            ignored.append(event.tracking_number)
            continue
        done = record_tracking_event(
            session,
            label.tracking_number,
            event.status,
            event.occurred_at,
            event.location,
            event.description,
            event_id=event.event_id,
            source="webhook",
        )
        if done is None:
            duplicates += 1
        else:
            recorded += 1
    return WebhookResult(len(events), recorded, duplicates, sorted(set(ignored)))


def _labels_by_number(
    session: Session, carrier_id: int, numbers: Iterable[str]
) -> dict[str, ShippingLabel]:
    wanted = sorted({n.strip().upper() for n in numbers})
    if not wanted:
        return {}
    rows = session.scalars(
        select(ShippingLabel).where(
            ShippingLabel.carrier_id == carrier_id, ShippingLabel.tracking_number.in_(wanted)
        )
    )
    return {label.tracking_number: label for label in rows}
