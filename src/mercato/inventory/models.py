from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.crypto import EncryptedString
from mercato.db import Base, BigId, BigIntPK, UTCDateTime, utcnow


class StockLevel(Base):
    """Stock of one variant at one location. Changed only by conditional UPDATEs.

    ``on_hand`` and ``reserved`` always equal the sums of this row's ledger movements;
    available = on_hand - reserved - safety_stock, shown as 0 when negative.
    """

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint("safety_stock >= 0", name="safety_not_negative"),
        CheckConstraint("incoming >= 0", name="incoming_not_negative"),
        Index("ix_stock_levels_location_variant", "location_id", "variant_id"),
    )

    variant_id: Mapped[int] = mapped_column(
        ForeignKey("variants.id", ondelete="RESTRICT"), primary_key=True
    )
    location_id: Mapped[int] = mapped_column(
        ForeignKey("locations.id", ondelete="RESTRICT"), primary_key=True
    )
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety_stock: Mapped[int] = mapped_column(Integer, default=0)
    # Units on purchase orders and transfers in transit to this location.
    incoming: Mapped[int] = mapped_column(Integer, default=0)
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockMovement(Base):
    """The append-only stock ledger: one row per change of on hand or reserved."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_stock", "variant_id", "location_id", "id"),
        Index("ix_stock_movements_reference", "reference_type", "reference_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    variant_id: Mapped[int] = mapped_column(BigId)
    location_id: Mapped[int] = mapped_column(BigId)
    reason: Mapped[str] = mapped_column(String(20))
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    reference_type: Mapped[str | None] = mapped_column(String(30))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    # Typed by staff (may name a customer): encrypted.
    note: Mapped[str | None] = mapped_column(EncryptedString())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Reservation(Base):
    """Units held for a cart, checkout or order line at one location."""

    __tablename__ = "stock_reservations"
    __table_args__ = (
        Index("ix_stock_reservations_expiry", "status", "expires_at"),
        Index("ix_stock_reservations_reference", "reference_type", "reference_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    variant_id: Mapped[int] = mapped_column(BigId)
    location_id: Mapped[int] = mapped_column(BigId)
    quantity: Mapped[int] = mapped_column(Integer)
    # held (expires) -> allocated (to an order line, no expiry) -> fulfilled; or released/expired
    status: Mapped[str] = mapped_column(String(12))
    channel_id: Mapped[int | None] = mapped_column(BigId)
    reference_type: Mapped[str | None] = mapped_column(String(30))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Transfer(Base):
    """Stock moving between two locations: draft -> shipped -> received."""

    __tablename__ = "stock_transfers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    from_location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    to_location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TransferLine(Base):
    __tablename__ = "stock_transfer_lines"

    transfer_id: Mapped[int] = mapped_column(
        ForeignKey("stock_transfers.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    received: Mapped[int] = mapped_column(Integer, default=0)


class PurchaseOrder(Base):
    """Stock ordered from a supplier for one location: open -> (partially) received."""

    __tablename__ = "purchase_orders"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    supplier: Mapped[str] = mapped_column(String(200))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(String(20))
    expected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_lines"

    purchase_order_id: Mapped[int] = mapped_column(
        ForeignKey("purchase_orders.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    received: Mapped[int] = mapped_column(Integer, default=0)


class StockCount(Base):
    """A cycle count of some variants at one location, posted as ``count`` movements."""

    __tablename__ = "stock_counts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockCountLine(Base):
    __tablename__ = "stock_count_lines"

    count_id: Mapped[int] = mapped_column(
        ForeignKey("stock_counts.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"), primary_key=True)
    expected: Mapped[int] = mapped_column(Integer)
    counted: Mapped[int] = mapped_column(Integer)
