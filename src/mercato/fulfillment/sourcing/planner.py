"""One call of :func:`source_order`: the order's lines grouped by target, the groups
solved one after the other on the stock and capacity the previous ones left (every order of
the groups tried when there are few), and the best attempt rendered as a plan with its
explanations."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence

from mercato.fulfillment.sourcing.model import (
    DEFAULT_POLICY,
    Allocation,
    Destination,
    FulfilmentMethod,
    LinePlan,
    Location,
    OrderLine,
    Shipment,
    SourcingPlan,
    SourcingPolicy,
    StockTable,
    UnfilledLine,
    UnfilledReason,
)
from mercato.fulfillment.sourcing.rules import NO_CAPACITY, OK, leg, rejection_text, ship_check
from mercato.fulfillment.sourcing.search import (
    EPS,
    UNLIMITED,
    Demand,
    Group,
    Solution,
    Target,
    solve,
)

_Spec = tuple[Target, list[Demand], int]


class _Attempt:
    __slots__ = ("cost", "filled", "groups", "unfilled")

    def __init__(self) -> None:
        self.groups: list[Group] = []
        self.unfilled: dict[int, tuple[UnfilledReason, str]] = {}
        self.filled = 0
        self.cost = 0.0


class _Run:
    """One call of :func:`source_order`: inputs plus the residual stock and capacity."""

    def __init__(
        self,
        lines: Sequence[OrderLine],
        destination: Destination | None,
        locations: Mapping[int, Location],
        stock: StockTable,
        policy: SourcingPolicy,
        excluded: frozenset[int],
    ) -> None:
        self.lines = lines
        self.destination = destination
        self.locations = locations
        self.stock = stock
        self.policy = policy
        self.excluded = excluded
        self.left: dict[int, dict[int, int]] = {}
        self.cap_left: dict[int, int] = {}
        # (origin, pickup store or None for the customer) -> (km, shipment cost)
        self.legs: dict[tuple[int, int | None], tuple[float, float]] = {}

    def _reset(self) -> None:
        self.left = {}
        for line in self.lines:
            if line.variant_id not in self.left:
                self.left[line.variant_id] = dict(self.stock.get(line.variant_id) or {})
        self.cap_left = {}

    def _capacity(self, origin: Location) -> int:
        left = self.cap_left.get(origin.id)
        if left is not None:
            return left
        return UNLIMITED if origin.capacity is None else origin.capacity

    def _consume(self, group: Group, solution: Solution) -> None:
        for demand, take in zip(group.demands, solution.allocs, strict=True):
            if take is None:
                continue
            held = self.left[demand.variant]
            for origin_id, units in take:
                held[origin_id] -= units
                location = self.locations[origin_id]
                if location.capacity is not None and origin_id not in group.free:
                    self.cap_left[origin_id] = self._capacity(location) - units

    def _leg_to(self, origin: Location, target: Target) -> tuple[float, float]:
        key = (origin.id, target.store_id)
        known = self.legs.get(key)
        if known is None:
            known = self.legs[key] = leg(origin, target.country, target.point, self.policy)
        return known

    # -- groups

    def _group(self, target: Target, demands: list[Demand], max_legs: int) -> Group:
        policy = self.policy
        group = Group(target, demands, max_legs, policy.allow_split)
        locations = self.locations
        for demand in demands:
            eligible: dict[int, int] = {}
            rejected: list[tuple[int, int]] = []
            original = self.stock.get(demand.variant) or {}
            for origin_id, units in self.left[demand.variant].items():
                if units <= 0 or origin_id == target.store_id:
                    continue
                origin = locations.get(origin_id)
                if origin is None:
                    continue
                code = ship_check(
                    origin,
                    original.get(origin_id, 0),
                    demand.allow_sfs,
                    target.country,
                    policy,
                    self.excluded,
                )
                if code == OK:
                    capacity = self._capacity(origin)
                    if capacity <= 0:
                        code = NO_CAPACITY
                    else:
                        group.cap[origin_id] = capacity
                if code != OK:
                    rejected.append((origin_id, code))
                    continue
                eligible[origin_id] = units
                if origin_id not in group.leg:
                    km, cost = self._leg_to(origin, target)
                    group.leg[origin_id] = cost
                    group.dist[origin_id] = km
                    group.pen[origin_id] = (
                        policy.store_unit_penalty if origin.type == "store" else 0.0
                    )
            store_id = target.store_id
            if store_id is not None and store_id not in self.excluded:
                on_shelf = self.left[demand.variant].get(store_id, 0)
                if on_shelf > 0:
                    eligible[store_id] = on_shelf
                    group.free = (store_id,)
            group.elig.append(eligible)
            group.rejected.append(rejected)
        for store_id in group.free:
            group.leg[store_id] = group.dist[store_id] = group.pen[store_id] = 0.0
            group.cap[store_id] = UNLIMITED
        # Lines with the fewest options choose first, so that they are not crowded out.
        group.order = sorted(
            range(len(demands)),
            key=lambda i: (len(group.elig[i]), -demands[i].quantity, i),
        )
        return group

    # -- whole order

    def _targets(self) -> tuple[dict[int, tuple[UnfilledReason, str]], list[_Spec]]:
        """Lines that cannot be served at all, and the groups: pickup stores, then the
        customer."""
        unfilled: dict[int, tuple[UnfilledReason, str]] = {}
        policy = self.policy
        lines = self.lines
        ship: list[Demand] = []
        pickup: dict[int, list[int]] = {}
        for i, line in enumerate(lines):
            if line.mode == "ship":
                if self.destination is None:
                    unfilled[i] = (
                        UnfilledReason.NO_DESTINATION,
                        "the order has no delivery address",
                    )
                else:
                    ship.append(
                        Demand(i, line.variant_id, line.quantity, line.allow_ship_from_store)
                    )
                continue
            store_id = line.pickup_location_id
            assert store_id is not None
            store = self.locations.get(store_id)
            problem = None
            if store is None:
                problem = f"pickup location #{store_id} is not a candidate location"
            elif not store.active:
                problem = f"pickup store {store.label} is inactive"
            elif not store.can_pickup:
                problem = f"{store.label} does not offer pickup"
            if problem is not None:
                unfilled[i] = (UnfilledReason.PICKUP_STORE_UNAVAILABLE, problem)
            else:
                pickup.setdefault(store_id, []).append(i)

        sequence: list[_Spec] = []
        # A pickup store receives at most one transfer when splitting is off.
        transfer_limit = 1 if not policy.allow_split else UNLIMITED
        for store_id in sorted(pickup):
            store = self.locations[store_id]
            target = Target(store_id, store.country, store._point, store.label)
            demands = [
                Demand(i, lines[i].variant_id, lines[i].quantity, lines[i].allow_ship_from_store)
                for i in pickup[store_id]
            ]
            sequence.append((target, demands, transfer_limit))
        if ship:
            assert self.destination is not None
            destination = self.destination
            home = Target(
                None, destination.country, destination._point, "the customer", destination.basis
            )
            limit = policy.max_shipments or UNLIMITED
            sequence.append((home, ship, 1 if not policy.allow_split else limit))
        return unfilled, sequence

    def _attempt(
        self, unfilled: dict[int, tuple[UnfilledReason, str]], sequence: Sequence[_Spec]
    ) -> _Attempt:
        self._reset()
        attempt = _Attempt()
        attempt.unfilled.update(unfilled)
        for target, demands, limit in sequence:
            group = self._group(target, demands, limit)
            solution = solve(group)
            group.best = solution
            self._consume(group, solution)
            attempt.groups.append(group)
            attempt.cost += solution.cost
            for k, demand in enumerate(demands):
                if solution.allocs[k] is None:
                    attempt.unfilled[demand.line] = self._why_unfilled(group, k)
        attempt.filled = len(self.lines) - len(attempt.unfilled)
        return attempt

    def _why_unfilled(self, group: Group, k: int) -> tuple[UnfilledReason, str]:
        demand = group.demands[k]
        eligible = group.elig[k]
        what = f"{demand.quantity} x variant {demand.variant}"
        if group.target.store_id is not None:
            what += f" for pickup at {group.target.label}"
        if not eligible:
            rejected = self._rejections(group, k, None)
            detail = f"no eligible location holds {what}"
            if rejected:
                detail += "; " + "; ".join(rejected)
            return UnfilledReason.NO_ELIGIBLE_STOCK, detail
        total = sum(eligible.values())
        if total < demand.quantity:
            return (
                UnfilledReason.INSUFFICIENT_STOCK,
                f"eligible locations hold {total} of {what}",
            )
        if sum(min(u, group.cap[o]) for o, u in eligible.items()) < demand.quantity:
            return UnfilledReason.NO_CAPACITY, f"eligible locations lack capacity for {what}"
        if not group.split:
            if max(eligible.values()) < demand.quantity:
                detail = f"no single location holds {what} and splitting is not allowed"
            else:
                detail = "cannot come from the location chosen for the rest and splitting is off"
            return UnfilledReason.SPLIT_NOT_ALLOWED, detail
        solution = group.best
        if solution is not None and len(solution.origins) >= group.max_legs:
            return (
                UnfilledReason.MAX_SHIPMENTS,
                f"would need more than {group.max_legs} shipment(s)",
            )
        return UnfilledReason.TAKEN_BY_OTHER_LINES, f"stock or capacity for {what} is used"

    def _rejections(self, group: Group, k: int, below: float | None) -> list[str]:
        """The cheapest locations that held the variant but could not ship it (at most 3),
        only those cheaper than ``below`` when given."""
        rejected = group.rejected[k]
        if not rejected:
            return []
        target = group.target
        scored: list[tuple[float, int, int]] = []
        for origin_id, code in rejected:
            cost = self._leg_to(self.locations[origin_id], target)[1]
            if below is None or cost < below:
                scored.append((cost, origin_id, code))
        scored.sort()
        original = self.stock.get(group.demands[k].variant) or {}
        texts = []
        for _, origin_id, code in scored[:3]:
            origin = self.locations[origin_id]
            why = rejection_text(code, origin, original.get(origin_id, 0), self.policy)
            texts.append(f"{origin.label} rejected: {why}")
        return texts

    def plan(self) -> SourcingPlan:
        unfilled, sequence = self._targets()
        # Groups compete for the stock and capacity they share, so the one solved first
        # chooses first: every order is tried when there are few groups.
        if len(sequence) <= 3:
            orders = list(itertools.permutations(sequence))
        else:
            orders = [tuple(sequence), (sequence[-1], *sequence[:-1])]
        best: _Attempt | None = None
        for order in orders:
            attempt = self._attempt(unfilled, order)
            if (
                best is None
                or attempt.filled > best.filled
                or (attempt.filled == best.filled and attempt.cost < best.cost - EPS)
            ):
                best = attempt
        assert best is not None
        return self._render(best)

    # -- output

    def _render(self, attempt: _Attempt) -> SourcingPlan:
        lines = self.lines
        locations = self.locations
        per_line: dict[int, list[Allocation]] = {}
        why: dict[int, list[str]] = {}
        shipments: list[Shipment] = []
        notes: list[str] = []
        store_units = 0
        cost = 0.0
        for group in attempt.groups:
            solution = group.best
            assert solution is not None
            target = group.target
            method: FulfilmentMethod = "ship" if target.store_id is None else "transfer"
            carried: dict[int, list[tuple[str, int]]] = {o: [] for o in solution.origins}
            for demand, take in zip(group.demands, solution.allocs, strict=True):
                for origin_id, units in take or ():
                    if origin_id not in group.free:
                        carried[origin_id].append((lines[demand.line].line_id, units))
            for origin_id in solution.origins:
                origin = locations[origin_id]
                loads = tuple(carried[origin_id])
                units = sum(u for _, u in loads)
                if origin.type == "store":
                    store_units += units
                km = group.dist[origin_id]
                shipment_fixed = group.leg[origin_id]
                cost += shipment_fixed + group.pen[origin_id] * units
                shipments.append(
                    Shipment(
                        origin_id=origin_id,
                        destination_id=target.store_id,
                        distance_km=km,
                        cross_border=origin.country != target.country,
                        cost=shipment_fixed,
                        units=units,
                        lines=loads,
                        explanation=(
                            f"{origin.label} -> {target.label}: {len(loads)} line(s), "
                            f"{units} unit(s), {target.distance_text(origin, km)}, "
                            f"cost {shipment_fixed:.2f}"
                        ),
                    )
                )
            if solution.origins:
                notes.append(self._note(group, solution))
            for k, demand in enumerate(group.demands):
                take = solution.allocs[k]
                if take is None:
                    continue
                texts = why.setdefault(demand.line, [])
                for origin_id, units in take:
                    if origin_id in group.free:
                        per_line.setdefault(demand.line, []).append(
                            Allocation(origin_id, units, "pickup")
                        )
                        label = locations[origin_id].label
                        texts.append(f"{label}: {units} from its own stock for pickup")
                        continue
                    per_line.setdefault(demand.line, []).append(
                        Allocation(origin_id, units, method)
                    )
                    line_id = lines[demand.line].line_id
                    others = [other for other, _ in carried[origin_id] if other != line_id]
                    whole = len(solution.origins) == 1
                    texts.append(self._reason(group, origin_id, units, others, whole))
                worst = max(group.leg[o] for o, _ in take)
                if worst > 0:
                    texts.extend(self._rejections(group, k, worst))

        plans = tuple(
            LinePlan(
                line_id=line.line_id,
                variant_id=line.variant_id,
                quantity=line.quantity,
                allocations=tuple(per_line[i]),
                explanation="; ".join(why[i]),
            )
            for i, line in enumerate(lines)
            if i not in attempt.unfilled and i in per_line
        )
        unfilled = tuple(
            UnfilledLine(
                line_id=lines[i].line_id,
                variant_id=lines[i].variant_id,
                quantity=lines[i].quantity,
                reason=reason,
                detail=detail,
            )
            for i, (reason, detail) in sorted(attempt.unfilled.items())
        )
        shipments.sort(
            key=lambda s: (s.destination_id is not None, s.destination_id or 0, s.origin_id)
        )
        return SourcingPlan(
            lines=plans,
            unfilled=unfilled,
            shipments=tuple(shipments),
            cost=cost,
            store_units=store_units,
            notes=tuple(notes),
        )

    def _reason(
        self, group: Group, origin_id: int, units: int, others: list[str], whole: bool
    ) -> str:
        origin = self.locations[origin_id]
        target = group.target
        noun = "unit" if units == 1 else "units"
        if target.store_id is not None:
            what = f"{units} {noun} transferred to {target.label}"
        elif whole and others:
            what = f"all {len(others) + 1} lines in one shipment"
        elif others:
            what = f"{units} {noun} in one shipment with {', '.join(others)}"
        else:
            what = f"{units} {noun} in a shipment of their own"
        text = (
            f"{origin.label}: {what}, {target.distance_text(origin, group.dist[origin_id])}, "
            f"cost {group.leg[origin_id]:.2f}"
        )
        if group.pen[origin_id]:
            text += f" + store penalty {group.pen[origin_id] * units:.2f}"
        if origin.country != target.country:
            text += f" (cross-border from {origin.country})"
        return text

    def _note(self, group: Group, solution: Solution) -> str:
        labels = ", ".join(self.locations[o].label for o in solution.origins)
        note = (
            f"to {group.target.label}: {len(solution.origins)} shipment(s) from {labels}, "
            f"cost {solution.cost:.2f}"
        )
        runner = group.runner_up
        if runner is not None and runner.filled == solution.filled and runner.origins:
            others = ", ".join(self.locations[o].label for o in runner.origins)
            note += f"; next best {others} at {runner.cost:.2f}"
        return note


def source_order(
    lines: Sequence[OrderLine],
    destination: Destination | None,
    locations: Mapping[int, Location],
    stock: StockTable,
    policy: SourcingPolicy = DEFAULT_POLICY,
    *,
    excluded: Collection[int] = frozenset(),
) -> SourcingPlan:
    """Decide where each line of one order comes from.

    ``destination`` may be None for an order made only of pickup lines. ``locations`` are the
    candidates by id (see :func:`index_locations`); stock at locations missing from it is
    ignored. ``stock`` maps ``variant -> location -> available units``. ``excluded`` locations
    are never used (re-routing after a location rejected a line).
    """
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise ValueError(f"duplicate line id {line.line_id!r}")
        seen.add(line.line_id)
    run = _Run(lines, destination, locations, stock, policy, frozenset(excluded))
    return run.plan()
