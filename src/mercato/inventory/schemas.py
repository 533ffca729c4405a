from __future__ import annotations

from datetime import datetime

from pydantic import Field

from mercato.inventory.service import MAX_QUANTITY, Reason
from mercato.schemas import ResponseModel, StrictModel

Quantity = Field(gt=0, le=MAX_QUANTITY)


class AdjustmentLineIn(StrictModel):
    variant_id: int
    quantity: int = Field(description="Signed change of on hand: +10 received, -2 damaged")
    reason: Reason


class AdjustmentIn(StrictModel):
    location_id: int
    channel_id: int | None = Field(
        default=None, description="The channel the change happened through (a POS sale, say)"
    )
    lines: list[AdjustmentLineIn] = Field(min_length=1, max_length=1000)
    note: str | None = Field(default=None, max_length=2000)
    reference: str | None = Field(default=None, max_length=64)


class LevelOut(ResponseModel):
    variant_id: int
    location_id: int
    on_hand: int
    reserved: int
    safety_stock: int
    available: int
    incoming: int
    low_stock_threshold: int | None


class LevelPage(ResponseModel):
    items: list[LevelOut]
    next_cursor: str | None = None


class PolicyIn(StrictModel):
    safety_stock: int | None = Field(default=None, ge=0, le=MAX_QUANTITY)
    low_stock_threshold: int | None = Field(default=None, ge=0, le=MAX_QUANTITY)


class MovementOut(ResponseModel):
    id: int
    variant_id: int
    location_id: int
    reason: str
    on_hand_delta: int
    reserved_delta: int
    actor_type: str
    actor_id: str | None
    channel_id: int | None
    reference_type: str | None
    reference_id: str | None
    note: str | None
    created_at: datetime


class HoldLineIn(StrictModel):
    variant_id: int
    quantity: int = Quantity
    location_id: int | None = Field(
        default=None, description="Hold at this location; omitted: source from the channel"
    )


class ReservationIn(StrictModel):
    lines: list[HoldLineIn] = Field(min_length=1, max_length=200)
    channel_id: int | None = Field(
        default=None, description="Source lines without a location from this channel's locations"
    )
    ttl_seconds: int = Field(default=900, ge=30, le=7 * 24 * 3600)
    allow_split: bool = True
    reference_type: str | None = Field(default=None, max_length=30)
    reference_id: str | None = Field(default=None, max_length=64)


class ReservationOut(ResponseModel):
    id: int
    variant_id: int
    location_id: int
    quantity: int
    status: str
    channel_id: int | None
    reference_type: str | None
    reference_id: str | None
    expires_at: datetime | None
    created_at: datetime


class ReservationsOut(ResponseModel):
    reservations: list[ReservationOut]


class AllocateIn(StrictModel):
    reference_type: str = Field(min_length=1, max_length=30)
    reference_id: str = Field(min_length=1, max_length=64)


class FulfilIn(StrictModel):
    quantity: int | None = Field(default=None, gt=0, le=MAX_QUANTITY)


class LineIn(StrictModel):
    variant_id: int
    quantity: int = Quantity


class TransferIn(StrictModel):
    from_location_id: int
    to_location_id: int
    lines: list[LineIn] = Field(min_length=1, max_length=1000)
    ship: bool = Field(default=False, description="Ship at once instead of leaving a draft")
    note: str | None = Field(default=None, max_length=2000)


class ReceiveLineIn(StrictModel):
    variant_id: int
    quantity: int = Field(ge=0, le=MAX_QUANTITY)


class ReceiveIn(StrictModel):
    lines: list[ReceiveLineIn] | None = Field(
        default=None, max_length=1000, description="Omitted: everything shipped arrived"
    )
    note: str | None = Field(default=None, max_length=2000)


class TransferLineOut(ResponseModel):
    variant_id: int
    quantity: int
    received: int


class Discrepancy(ResponseModel):
    variant_id: int
    shipped: int
    received: int
    missing: int


class TransferOut(ResponseModel):
    id: int
    from_location_id: int
    to_location_id: int
    status: str
    note: str | None
    created_at: datetime
    shipped_at: datetime | None
    received_at: datetime | None
    lines: list[TransferLineOut]
    discrepancies: list[Discrepancy] = []


class TransferPage(ResponseModel):
    items: list[TransferOut]
    next_cursor: str | None = None


class PurchaseOrderIn(StrictModel):
    reference: str = Field(min_length=1, max_length=64)
    supplier: str = Field(min_length=1, max_length=200)
    location_id: int
    expected_at: datetime | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=1000)


class PurchaseOrderLineOut(ResponseModel):
    variant_id: int
    quantity: int
    received: int


class PurchaseOrderOut(ResponseModel):
    id: int
    reference: str
    supplier: str
    location_id: int
    status: str
    expected_at: datetime | None
    created_at: datetime
    lines: list[PurchaseOrderLineOut]


class PurchaseReceiptIn(StrictModel):
    lines: list[LineIn] = Field(min_length=1, max_length=1000)
    note: str | None = Field(default=None, max_length=2000)


class CountLineIn(StrictModel):
    variant_id: int
    counted: int = Field(ge=0, le=MAX_QUANTITY)


class CountIn(StrictModel):
    location_id: int
    lines: list[CountLineIn] = Field(min_length=1, max_length=5000)
    note: str | None = Field(default=None, max_length=2000)


class CountLineOut(ResponseModel):
    variant_id: int
    expected: int
    counted: int
    difference: int


class CountOut(ResponseModel):
    id: int
    location_id: int
    note: str | None
    created_at: datetime
    lines: list[CountLineOut]


class LocationStockOut(ResponseModel):
    location_id: int
    code: str
    name: str
    type: str
    distance_km: float | None
    can_pickup: bool
    can_ship_from_store: bool
    available: dict[int, int]


class VariantAvailabilityOut(ResponseModel):
    variant_id: int
    available: int
    in_stock: bool


class AvailabilityOut(ResponseModel):
    channel: str | None = None
    variants: list[VariantAvailabilityOut]
    locations: list[LocationStockOut] = []
    # Where the distances are measured from: given (coordinates), else geocoded from the
    # postal code, the city or the country.
    coordinates_source: str | None = None


class VerifyOut(ResponseModel):
    rows: int
    mismatches: list[dict[str, int]]
    ok: bool
