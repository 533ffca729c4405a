"""Inventory use cases: the stock ledger and everything that moves stock.

The domain's public face: other domains, the router, the CLI and the tests call these
names. The use cases live in the sibling modules:

* ``ledger``: the one primitive that changes stock (:func:`change`), the shared types and
  validation, and :func:`verify`;
* ``levels``: adjustments, bulk receipts, per-row policy, and the reads staff use;
* ``reservations``: holds, allocations, fulfilment, release and expiry;
* ``availability``: what can be promised, and the stores near a shopper that hold it;
* ``transfers``, ``purchase_orders``, ``counts``: the documents that move stock.

Invariants, for every (variant, location):

* ``on_hand`` = sum of ``on_hand_delta`` and ``reserved`` = sum of ``reserved_delta`` of
  its movements (``verify`` proves it);
* ``0 <= reserved <= on_hand`` (also CHECK constraints in the schema);
* a hold or sale never takes more than on_hand - reserved - safety_stock.

The guards live in the WHERE clause of the UPDATE, so two processes racing for the last
unit cannot both win: the database serialises the row and re-checks the condition.
"""

from __future__ import annotations

# Re-exported because callers (the tests among them) have always reached them here.
from sqlalchemy import update

from mercato.inventory.availability import (
    NearbyStock,
    availability,
    availability_by_location,
    nearby_stock,
)
from mercato.inventory.counts import post_count
from mercato.inventory.ledger import (
    ACTIVE_RESERVATION,
    MAX_QUANTITY,
    Context,
    Guard,
    InsufficientStock,
    LevelSnapshot,
    Mismatch,
    Reason,
    ReservationStatus,
    change,
    check_location,
    check_quantity,
    check_variants,
    verify,
)
from mercato.inventory.levels import (
    MANUAL_REASONS,
    AdjustmentLine,
    adjust,
    get_level,
    list_levels,
    list_movements,
    receive_bulk,
    set_policy,
    stocked_variants,
)
from mercato.inventory.models import Reservation, StockLevel
from mercato.inventory.purchase_orders import (
    cancel_purchase_order,
    create_purchase_order,
    get_purchase_order,
    list_purchase_orders,
    purchase_order_lines,
    receive_purchase_order,
)
from mercato.inventory.reservations import (
    DEFAULT_HOLD_TTL,
    HOLD_ATTEMPTS,
    HoldLine,
    active_reservations_for,
    allocate,
    expire_holds,
    fulfil,
    get_reservation,
    hold,
    release,
    release_quantity,
    reservations_for,
)
from mercato.inventory.transfers import (
    create_transfer,
    get_transfer,
    list_transfers,
    receive_transfer,
    ship_transfer,
    transfer_lines,
)

__all__ = [
    "ACTIVE_RESERVATION",
    "DEFAULT_HOLD_TTL",
    "HOLD_ATTEMPTS",
    "MANUAL_REASONS",
    "MAX_QUANTITY",
    "AdjustmentLine",
    "Context",
    "Guard",
    "HoldLine",
    "InsufficientStock",
    "LevelSnapshot",
    "Mismatch",
    "NearbyStock",
    "Reason",
    "Reservation",
    "ReservationStatus",
    "StockLevel",
    "active_reservations_for",
    "adjust",
    "allocate",
    "availability",
    "availability_by_location",
    "cancel_purchase_order",
    "change",
    "check_location",
    "check_quantity",
    "check_variants",
    "create_purchase_order",
    "create_transfer",
    "expire_holds",
    "fulfil",
    "get_level",
    "get_purchase_order",
    "get_reservation",
    "get_transfer",
    "hold",
    "list_levels",
    "list_movements",
    "list_purchase_orders",
    "list_transfers",
    "nearby_stock",
    "post_count",
    "purchase_order_lines",
    "receive_bulk",
    "receive_purchase_order",
    "receive_transfer",
    "release",
    "release_quantity",
    "reservations_for",
    "set_policy",
    "ship_transfer",
    "stocked_variants",
    "transfer_lines",
    "update",
    "verify",
]
