"""The shipping domain's events: labels bought and voided, parcels' scans recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mercato.event_types import DomainEvent


@dataclass(frozen=True, kw_only=True)
class LabelFacts(DomainEvent):
    """What every label event says about the label."""

    AGGREGATE = "shipping_label"
    KEY = "label_id"

    label_id: int
    tracking_number: str
    carrier: str
    service: str
    # The caller's reference (a shipment or an order); labels bought by hand may have none.
    reference: str | None
    origin_country: str
    destination_country: str
    status: str  # the label's latest tracking status


@dataclass(frozen=True, kw_only=True)
class LabelCreated(LabelFacts):
    """A label was bought from a carrier for one parcel."""

    TYPE = "shipment.label_created"


@dataclass(frozen=True, kw_only=True)
class LabelVoided(LabelFacts):
    """A label no carrier had scanned was cancelled."""

    TYPE = "shipment.label_voided"


@dataclass(frozen=True)
class RecordedScan:
    """One recorded scan of a parcel, without the carrier's description (it can name who
    signed for the parcel)."""

    id: int
    status: str
    occurred_at: datetime
    location: str | None
    source: str  # "api" or "webhook"
    carrier_event_id: str | None


@dataclass(frozen=True, kw_only=True)
class TrackingUpdated(LabelFacts):
    """A scan of a parcel was recorded (``event``); ``status`` is the label's status after it."""

    TYPE = "shipment.tracking_updated"

    event: RecordedScan
