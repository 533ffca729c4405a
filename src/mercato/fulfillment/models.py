from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, BigId, BigIntPK, FixedDecimal, JSONType, UTCDateTime, utcnow


class RoutingDecision(Base):
    """Why the lines of an order go where they go: the sourcing engine's plan, kept."""

    __tablename__ = "routing_decisions"
    __table_args__ = (
        Index("ix_routing_decisions_order", "order_id", "id"),
        # An order is routed once when confirmed (re-routes and manual routes add theirs):
        # a second delivery of order.confirmed cannot store a second initial decision.
        Index(
            "uq_routing_decisions_initial",
            "order_id",
            unique=True,
            postgresql_where=text("trigger = 'initial'"),
            sqlite_where=text("trigger = 'initial'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    # initial | reroute | manual (| duplicate: a second initial routing stored before 0012)
    trigger: Mapped[str] = mapped_column(String(20))
    excluded_location_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    plan: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    unfilled: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    cost: Mapped[Decimal] = mapped_column(FixedDecimal(4, 18))
    shipments: Mapped[int] = mapped_column(Integer)
    explanation: Mapped[str] = mapped_column(Text)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FulfillmentOrder(Base):
    """The work one location does for one order: a pick list, a parcel, a pickup shelf.

    kinds: ``ship`` (to the customer's address), ``pickup`` (handed over at this store),
    ``transfer`` (sent to the pickup store of another fulfilment order).
    """

    __tablename__ = "fulfillment_orders"
    __table_args__ = (
        Index("ix_fulfillment_orders_location_status", "location_id", "status"),
        Index("ix_fulfillment_orders_order", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    kind: Mapped[str] = mapped_column(String(12))
    # open -> picking -> packed -> shipped | ready_for_pickup -> picked_up; cancelled
    status: Mapped[str] = mapped_column(String(20))
    destination_location_id: Mapped[int | None] = mapped_column(BigId)
    packages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    pickup_code_hash: Mapped[str | None] = mapped_column(String(64))
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FulfillmentLine(Base):
    __tablename__ = "fulfillment_lines"
    __table_args__ = (Index("ix_fulfillment_lines_fo", "fulfillment_order_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    fulfillment_order_id: Mapped[int] = mapped_column(
        ForeignKey("fulfillment_orders.id", ondelete="CASCADE")
    )
    order_line_id: Mapped[int] = mapped_column(BigId)
    variant_id: Mapped[int] = mapped_column(BigId)
    quantity: Mapped[int] = mapped_column(Integer)
    reservation_id: Mapped[int | None] = mapped_column(BigId)
    # open -> shipped | handed_over; rejected (the location could not fill it); cancelled
    status: Mapped[str] = mapped_column(String(16), default="open")


class Shipment(Base):
    """A parcel that left a location, with its carrier label and tracking."""

    __tablename__ = "shipments"
    __table_args__ = (Index("ix_shipments_order", "order_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    fulfillment_order_id: Mapped[int] = mapped_column(ForeignKey("fulfillment_orders.id"))
    location_id: Mapped[int] = mapped_column(BigId)
    carrier_code: Mapped[str] = mapped_column(String(40))
    service_code: Mapped[str] = mapped_column(String(40))
    tracking_number: Mapped[str] = mapped_column(String(64), index=True)
    label_id: Mapped[int | None] = mapped_column(BigId)
    # shipped (label bought, parcel handed to the carrier) -> in_transit -> delivered;
    # exception, returned_to_sender
    status: Mapped[str] = mapped_column(String(20))
    packages: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    customs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    duty_estimate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FulfillmentSettings(Base):
    """The business's routing policy and pickup rules (one row)."""

    __tablename__ = "fulfillment_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    pickup_days: Mapped[int] = mapped_column(Integer, default=7)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
