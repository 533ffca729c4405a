"""Stored labels and their recorded scans, read without calling a carrier.

These reads sit below the carrier context, labels and tracking: a carrier integration
replays a label's recorded scans, and labels and tracking both look labels up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mercato.db import get_or_404
from mercato.errors import NotFound
from mercato.shipping.models import ShippingLabel, TrackingEventRecord


def get_label(session: Session, label_id: int) -> ShippingLabel:
    return get_or_404(session, ShippingLabel, label_id, f"label {label_id}", fresh=True)


def label_by_tracking_number(session: Session, tracking_number: str) -> ShippingLabel:
    label = session.scalar(
        select(ShippingLabel)
        .where(ShippingLabel.tracking_number == tracking_number.strip().upper())
        .execution_options(populate_existing=True)
    )
    if label is None:
        raise NotFound(f"no label with tracking number {tracking_number}")
    return label


def list_labels(
    session: Session, *, reference: str | None, limit: int = 100, before: int | None = None
) -> list[ShippingLabel]:
    """Newest first; ``before`` continues after the label with that id."""
    query = select(ShippingLabel).order_by(ShippingLabel.id.desc()).limit(limit)
    if before is not None:
        query = query.where(ShippingLabel.id < before)
    if reference is not None:
        query = query.where(ShippingLabel.reference == reference)
    return list(session.scalars(query))


def forget_label_contents(session: Session, references: Sequence[str]) -> int:
    """Drop the printable content (it carries the recipient's name, address and phone) of
    the labels for these references; tracking and customs data stay. For erasure."""
    if not references:
        return 0
    result = session.execute(
        update(ShippingLabel)
        .where(ShippingLabel.reference.in_(list(references)), ShippingLabel.content.is_not(None))
        .values(content=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def label_facts(label: ShippingLabel) -> dict[str, Any]:
    """The fields every label event carries (:class:`~mercato.shipping.event_types.LabelFacts`)."""
    return {
        "label_id": label.id,
        "tracking_number": label.tracking_number,
        "carrier": label.carrier_code,
        "service": label.service_code,
        "reference": label.reference,
        "origin_country": label.origin_country,
        "destination_country": label.destination_country,
        "status": label.status,
    }


def tracking_events(session: Session, label_id: int) -> list[TrackingEventRecord]:
    return list(
        session.scalars(
            select(TrackingEventRecord)
            .where(TrackingEventRecord.label_id == label_id)
            .order_by(TrackingEventRecord.occurred_at, TrackingEventRecord.id)
        )
    )
