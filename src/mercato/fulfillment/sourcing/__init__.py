"""Order sourcing: decide which stock locations fulfil each line of an order.

A pure decision engine. The fulfilment service loads the candidate locations and the
available stock (already net of reservations and safety stock) and calls
:func:`source_order`; nothing here touches a database, and the same inputs always give the
same plan.

Shipments
---------
A *shipment* is one parcel from an origin location to one target:

* the customer's address, for lines delivered by ``ship``;
* a pickup store, for click & collect lines the store cannot serve from its own stock
  (a transfer from another location to the store).

Units a pickup store hands over from its own stock are not a shipment.

Cost function
-------------
Costs are abstract scores (not money), used everywhere, including by the benchmark's exact
optimiser::

    cost = Σ over shipments  ( cost_per_shipment
                             + cost_per_km * distance_km(origin, target)
                             + cross_border_penalty  if origin.country ≠ target country )
         + Σ over units shipped or transferred from a store  store_unit_penalty

``distance_km`` is the great-circle (haversine) distance; when the origin or the target has
no coordinates it is ``policy.unknown_distance_km`` (explanations then say "no coordinates:
assumed far"). Addresses and locations are geocoded offline (``mercato.geocoding``), so this
only happens for a country Mercato knows nothing about. Units a pickup store hands over from its
own shelf carry no store penalty: moving stock the store already holds can never be cheaper
than using it.

Objective: fill as many lines as possible (a line is filled completely or not at all), then
minimise the cost; equal costs go to fewer shipments, then to lower location ids.

Rules
-----
* stock: never more than ``stock[variant][location]`` across all lines of the order;
* capability and status: an origin must be active and not excluded; a store ships (to the
  customer or to another store) only with ``can_ship_from_store`` and only lines that allow
  ship-from-store; warehouses and dropship suppliers need ``can_ship``; a pickup store needs
  ``can_pickup`` and ``active``;
* capacity: ``Location.capacity`` is the number of *units* the location can still pick and
  dispatch today (shipped to customers plus transferred to pickup stores), ``None`` meaning
  unlimited; units a pickup store hands over from its own shelf do not use it;
* ``min_store_units``: a store holding fewer available units of a variant never ships it
  (its own click & collect customers may still take them);
* ``allow_split``: when false, each target (the customer's address, each pickup store)
  receives at most one shipment and no line is divided between locations;
* ``max_shipments``: at most that many shipments to the customer's address (transfers to
  pickup stores are internal and not counted);
* ``domestic_only`` rejects origins outside the target's country; ``cross_border_penalty``
  is added per shipment that crosses a border;
* ``excluded`` locations (those that rejected a line) are never used; an excluded pickup store
  still receives transfers, since the customer's pickup point does not change.

Algorithm
---------
Lines are grouped by target: the customer's address, and each pickup store, whose own shelf
is a free source that is always open for its lines. Groups share stock and capacity, so they
are solved one after the other on what the previous ones left; with up to three groups every
order is tried and the best plan kept (most lines filled, then lowest cost). In each group:

1. candidates are the eligible locations holding a needed variant, each with the fixed cost
   of a shipment from it (distance, cross-border) and its per-unit store penalty;
2. every location able to fill the whole group alone is priced, cheapest shipment first,
   stopping once the shipment cost alone exceeds the best found. When the best costs no more
   than the two cheapest shipments together no split can beat it: most orders end here;
3. otherwise, with splitting allowed, a greedy set cover (units covered per unit of cost),
   trimmed of the shipments it no longer needs, gives a first solution. A depth-first branch
   and bound then goes through the combinations of candidates (up to three locations, or as
   many as the first solution used) drawn from a pool: each line's six cheapest sources and
   every location that no cheaper one beats on the set of lines it can serve whole. A branch
   is cut as soon as its shipment costs reach the best solution, and a combination is only
   priced when it could cover every line. With splitting off, each location is tried alone.

Given a set of open locations, units are assigned line by line, lines with the fewest options
first: the pickup store's shelf, then warehouses before stores, larger holdings first. When a
line that the locations could serve is crowded out, the assignment is redone with the
crowded-out lines first, and with the smallest lines first.

The package: :mod:`.model` (inputs and outputs), :mod:`.geometry` (distances), :mod:`.rules`
(what may ship and what it costs), :mod:`.search` (one target's lines), :mod:`.planner`
(the whole order, :func:`source_order`) and :mod:`.verify` (:func:`verify_plan`).
"""

from __future__ import annotations

from mercato.fulfillment.sourcing.geometry import (
    EARTH_RADIUS_KM,
    haversine_km,
)
from mercato.fulfillment.sourcing.model import (
    DEFAULT_POLICY,
    Allocation,
    DeliveryMode,
    Destination,
    FulfilmentMethod,
    LinePlan,
    Location,
    LocationType,
    OrderLine,
    Shipment,
    SourcingPlan,
    SourcingPolicy,
    StockTable,
    UnfilledLine,
    UnfilledReason,
    index_locations,
    stock_table,
)
from mercato.fulfillment.sourcing.planner import (
    source_order,
)
from mercato.fulfillment.sourcing.rules import (
    distance_km,
    ship_rejection,
    shipment_cost,
    unit_penalty,
)
from mercato.fulfillment.sourcing.verify import (
    verify_plan,
)

__all__ = [
    "DEFAULT_POLICY",
    "EARTH_RADIUS_KM",
    "Allocation",
    "DeliveryMode",
    "Destination",
    "FulfilmentMethod",
    "LinePlan",
    "Location",
    "LocationType",
    "OrderLine",
    "Shipment",
    "SourcingPlan",
    "SourcingPolicy",
    "StockTable",
    "UnfilledLine",
    "UnfilledReason",
    "distance_km",
    "haversine_km",
    "index_locations",
    "ship_rejection",
    "shipment_cost",
    "source_order",
    "stock_table",
    "unit_penalty",
    "verify_plan",
]
