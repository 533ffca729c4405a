"""The search for one target's lines (the customer's address, or one pickup store): which
open locations serve them, and how the units are assigned (see the package notes).
"""

from __future__ import annotations

from collections.abc import Sequence

from mercato.fulfillment.sourcing.geometry import Point
from mercato.fulfillment.sourcing.model import Location

UNLIMITED = 1 << 62
EPS = 1e-9
# Search breadth: candidates kept per line for the combination search, in total, and the
# combination size always searched exactly.
_POOL_PER_LINE = 6
_POOL_LIMIT = 16
_SEARCH_DEPTH = 3


class Demand:
    __slots__ = ("allow_sfs", "line", "quantity", "variant")

    def __init__(self, line: int, variant: int, quantity: int, allow_sfs: bool) -> None:
        self.line = line
        self.variant = variant
        self.quantity = quantity
        self.allow_sfs = allow_sfs


class Target:
    __slots__ = ("basis", "country", "label", "point", "store_id")

    def __init__(
        self, store_id: int | None, country: str, point: Point | None, label: str, basis: str = ""
    ) -> None:
        self.store_id = store_id
        self.country = country
        self.point = point
        self.label = label
        self.basis = basis

    def distance_text(self, origin: Location, km: float) -> str:
        """The distance as explanations give it, with where it comes from."""
        if origin._point is None or self.point is None:
            return f"no coordinates: assumed far ({km:.0f} km)"
        return f"{km:.0f} km ({self.basis})" if self.basis else f"{km:.0f} km"


Take = list[tuple[int, int]]


class Solution:
    __slots__ = ("allocs", "cost", "filled", "origins")

    def __init__(
        self, filled: int, cost: float, origins: tuple[int, ...], allocs: list[Take | None]
    ) -> None:
        self.filled = filled
        self.cost = cost
        self.origins = origins
        self.allocs = allocs


def better(a: Solution, b: Solution | None) -> bool:
    if b is None:
        return True
    if a.filled != b.filled:
        return a.filled > b.filled
    if a.cost < b.cost - EPS:
        return True
    if a.cost > b.cost + EPS:
        return False
    if len(a.origins) != len(b.origins):
        return len(a.origins) < len(b.origins)
    return a.origins < b.origins


class Group:
    """The lines going to one target, their eligible origins and the search state.

    For a pickup store the store itself is an origin too, free and always open (its shelf):
    it costs nothing, needs no capacity and is not a shipment.
    """

    __slots__ = (
        "best",
        "cap",
        "demands",
        "dist",
        "elig",
        "free",
        "leg",
        "max_legs",
        "order",
        "pen",
        "rejected",
        "runner_up",
        "split",
        "target",
    )

    def __init__(self, target: Target, demands: list[Demand], max_legs: int, split: bool) -> None:
        self.target = target
        self.demands = demands
        self.max_legs = max_legs
        self.split = split
        self.elig: list[dict[int, int]] = []
        self.rejected: list[list[tuple[int, int]]] = []
        self.leg: dict[int, float] = {}
        self.dist: dict[int, float] = {}
        self.pen: dict[int, float] = {}
        self.cap: dict[int, int] = {}
        self.order: list[int] = []
        # Origins open at no cost: the pickup store's own shelf.
        self.free: tuple[int, ...] = ()
        self.best: Solution | None = None
        self.runner_up: Solution | None = None

    def consider(self, solution: Solution) -> None:
        best = self.best
        if better(solution, best):
            if best is not None and best.origins != solution.origins:
                self.runner_up = best
            self.best = solution
        elif (
            best is not None
            and solution.origins != best.origins
            and solution.filled == best.filled
            and better(solution, self.runner_up)
        ):
            self.runner_up = solution


def assign(group: Group, subset: Sequence[int]) -> Solution:
    """Assign the lines to the open locations ``subset``.

    Greedy, line by line. When a line the locations could serve is left out because
    earlier lines used the stock or capacity it needed, the assignment is redone with the
    left-out lines first, and with the smallest lines first (which fills the most lines
    when one capacity is what runs out).
    """
    if group.free:
        subset = (*group.free, *subset)
    order = group.order
    solution = _assign_in_order(group, subset, order)
    if solution.filled == len(group.demands):
        return solution
    cap = group.cap
    starved = [
        i
        for i in order
        if solution.allocs[i] is None
        and sum(min(group.elig[i].get(o, 0), cap[o]) for o in subset) >= group.demands[i].quantity
    ]
    if not starved:
        return solution
    retries = (
        starved + [i for i in order if i not in starved],
        sorted(order, key=lambda i: (group.demands[i].quantity, i)),
    )
    for retry_order in retries:
        retry = _assign_in_order(group, subset, retry_order)
        if better(retry, solution):
            solution = retry
    return solution


def _assign_in_order(group: Group, subset: Sequence[int], order: Sequence[int]) -> Solution:
    demands = group.demands
    elig = group.elig
    pen = group.pen
    cap = group.cap
    split = group.split
    # The shelf comes first in ``subset``; it serves before any paid source.
    shelves = len(group.free)
    used: dict[tuple[int, int], int] = {}
    used_cap: dict[int, int] = {}
    allocs: list[Take | None] = [None] * len(demands)
    filled = 0
    penalty = 0.0
    for i in order:
        demand = demands[i]
        eligible = elig[i]
        variant = demand.variant
        need = demand.quantity
        options: list[tuple[float, bool, int, int, int]] = []
        for rank, origin_id in enumerate(subset):
            units = eligible.get(origin_id)
            if units is None:
                continue
            units -= used.get((variant, origin_id), 0)
            room = cap[origin_id] - used_cap.get(origin_id, 0)
            if room < units:
                units = room
            if units > 0:
                options.append((pen[origin_id], rank >= shelves, -units, rank, origin_id))
        if not options:
            continue
        options.sort()
        take: Take = []
        if split:
            if -sum(option[2] for option in options) < need:
                continue
            for _, _, negative, _, origin_id in options:
                units = -negative if -negative < need else need
                take.append((origin_id, units))
                need -= units
                if need == 0:
                    break
        else:
            whole = next((o for *_, neg, _, o in options if -neg >= need), None)
            if whole is None:
                continue
            take.append((whole, need))
        for origin_id, units in take:
            key = (variant, origin_id)
            used[key] = used.get(key, 0) + units
            used_cap[origin_id] = used_cap.get(origin_id, 0) + units
            penalty += pen[origin_id] * units
        allocs[i] = take
        filled += 1
    free = group.free
    origins = tuple(sorted({o for take in allocs if take for o, _ in take if o not in free}))
    cost = sum(group.leg[o] for o in origins) + penalty
    return Solution(filled, cost, origins, allocs)


def solve(group: Group) -> Solution:
    """The best way found to serve the group's lines from its eligible origins."""
    demands = group.demands
    leg = group.leg
    everything = len(demands)
    candidates = sorted((o for o in leg if o not in group.free), key=lambda o: (leg[o], o))
    if group.free:
        group.consider(assign(group, ()))
    if not candidates:
        return group.best or Solution(0, 0.0, (), [None] * everything)
    if not group.free:
        _whole_order_singles(group)
    best = group.best
    if group.max_legs == 1:
        if best is None or best.filled < everything:
            _partial_singles(group, candidates)
        assert group.best is not None
        return group.best
    # Any two shipments cost at least the two cheapest.
    if (
        best is not None
        and best.filled == everything
        and (len(candidates) < 2 or best.cost <= leg[candidates[0]] + leg[candidates[1]] + EPS)
    ):
        return best
    # What each line could get with every candidate open; lines that cannot be filled at
    # all do not keep the search from pricing combinations.
    needs = [
        demand.quantity
        if sum(min(units, group.cap[o]) for o, units in eligible.items()) >= demand.quantity
        else 0
        for demand, eligible in zip(demands, group.elig, strict=True)
    ]
    if best is None or best.filled < sum(1 for need in needs if need):
        group.consider(_greedy(group, candidates))
    assert group.best is not None
    # Deep enough to rebuild the incumbent, so that a split the greedy needed is improved.
    depth = min(max(_SEARCH_DEPTH, len(group.best.origins)), group.max_legs)
    _search(group, _pool(group), depth, needs)
    assert group.best is not None
    return group.best


def _whole_order_singles(group: Group) -> None:
    common = set(group.elig[0])
    for eligible in group.elig[1:]:
        common.intersection_update(eligible)
    if not common:
        return
    need: dict[int, int] = {}
    for demand in group.demands:
        need[demand.variant] = need.get(demand.variant, 0) + demand.quantity
    total = sum(need.values())
    probe = {demand.variant: i for i, demand in enumerate(group.demands)}
    leg = group.leg
    for origin_id in sorted(common, key=lambda o: (leg[o], o)):
        best = group.best
        if best is not None and leg[origin_id] > best.cost + EPS:
            break
        if group.cap[origin_id] < total:
            continue
        if any(group.elig[i][origin_id] < need[v] for v, i in probe.items()):
            continue
        cost = leg[origin_id] + group.pen[origin_id] * total
        allocs: list[Take | None] = [[(origin_id, d.quantity)] for d in group.demands]
        group.consider(Solution(len(group.demands), cost, (origin_id,), allocs))


def _partial_singles(group: Group, candidates: list[int]) -> None:
    free = group.free
    reach = {
        o: sum(1 for e in group.elig if o in e or any(f in e for f in free)) for o in candidates
    }
    for origin_id in sorted(candidates, key=lambda o: (-reach[o], group.leg[o], o)):
        best = group.best
        if best is not None and reach[origin_id] < best.filled:
            break
        group.consider(assign(group, (origin_id,)))


def _greedy(group: Group, candidates: list[int]) -> Solution:
    """Set cover by units covered per unit of cost, then drop shipments not needed."""
    demands = group.demands
    remaining = [d.quantity for d in demands]
    taken: dict[tuple[int, int], int] = {}
    chosen: list[int] = []

    def take_from(origin_id: int) -> None:
        room = group.cap[origin_id]
        for i, demand in enumerate(demands):
            units = group.elig[i].get(origin_id)
            if not units or not remaining[i] or room <= 0:
                continue
            key = (demand.variant, origin_id)
            units = min(units - taken.get(key, 0), remaining[i], room)
            if units > 0:
                taken[key] = taken.get(key, 0) + units
                remaining[i] -= units
                room -= units

    for origin_id in group.free:
        take_from(origin_id)
    while len(chosen) < group.max_legs and any(remaining):
        pick: int | None = None
        pick_score = 0.0
        for origin_id in candidates:
            if origin_id in chosen:
                continue
            gain = 0
            claimed: dict[int, int] = {}
            for i, demand in enumerate(demands):
                units = group.elig[i].get(origin_id)
                if not units or not remaining[i]:
                    continue
                key = (demand.variant, origin_id)
                units -= taken.get(key, 0) + claimed.get(demand.variant, 0)
                units = min(units, remaining[i])
                if units > 0:
                    claimed[demand.variant] = claimed.get(demand.variant, 0) + units
                    gain += units
            gain = min(gain, group.cap[origin_id])
            if gain <= 0:
                continue
            score = gain / (group.leg[origin_id] + group.pen[origin_id] * gain + EPS)
            if score > pick_score:
                pick, pick_score = origin_id, score
        if pick is None:
            break
        chosen.append(pick)
        take_from(pick)

    def by_cost(origin_id: int) -> tuple[float, int]:
        return (group.leg[origin_id], origin_id)

    solution = assign(group, sorted(chosen, key=by_cost))
    trimmed = True
    while trimmed and len(solution.origins) > 1:
        trimmed = False
        for drop in sorted(solution.origins, key=lambda o: (-group.leg[o], o)):
            keep = sorted((o for o in solution.origins if o != drop), key=by_cost)
            trial = assign(group, keep)
            if better(trial, solution):
                solution, trimmed = trial, True
                break
    return solution


def _pool(group: Group) -> list[int]:
    """The candidates the combination search draws from, sorted by shipment cost.

    By priority: the incumbent's locations; every location that no cheaper location
    beats on the set of lines it can serve whole (what a shipment limit needs); then each
    line's cheapest sources in turn, for lines that must be split.
    """
    leg = group.leg
    pen = group.pen
    cap = group.cap
    picked: dict[int, None] = dict.fromkeys(group.best.origins if group.best else ())
    masks: dict[int, int] = {}
    alone: dict[int, float] = {}
    ranked: list[list[int]] = []
    free = group.free
    for k, (demand, eligible) in enumerate(zip(group.demands, group.elig, strict=True)):
        q = demand.quantity
        for origin_id, units in eligible.items():
            if min(units, cap[origin_id]) >= q and origin_id not in free:
                masks[origin_id] = masks.get(origin_id, 0) | (1 << k)
                alone[origin_id] = alone.get(origin_id, leg[origin_id]) + pen[origin_id] * q
        ranked.append(
            sorted(
                (o for o in eligible if o not in free),
                key=lambda o: (leg[o] + pen[o] * min(q, eligible[o]), o),
            )
        )
    frontier: list[tuple[int, float]] = []
    for origin_id in sorted(masks, key=lambda o: (alone[o], o)):
        mask = masks[origin_id]
        if any(mask & kept == mask for kept, _ in frontier):
            continue
        frontier.append((mask, alone[origin_id]))
        picked[origin_id] = None
    for rank in range(_POOL_PER_LINE):
        for sources in ranked:
            if rank < len(sources):
                picked[sources[rank]] = None
    return sorted(list(picked)[:_POOL_LIMIT], key=lambda o: (leg[o], o))


def _search(group: Group, pool: list[int], depth: int, needs: list[int]) -> None:
    """Branch and bound over combinations of ``pool`` (sorted by shipment cost).

    Each branch carries what its locations leave uncovered of every line (an optimistic
    count: stock and capacity shared between lines are not deducted). A combination is
    only priced when it could fill everything; a location adding nothing to the lines
    still open is skipped unless, as a warehouse, it could take units off a store, or the
    combination fell short of its optimistic count.
    """
    leg = group.leg
    pen = group.pen
    cap = group.cap
    reachable = sum(1 for need in needs if need)
    gives = [
        [min(eligible.get(origin_id, 0), cap[origin_id]) for eligible in group.elig]
        for origin_id in pool
    ]

    def visit(
        start: int,
        chosen: tuple[int, ...],
        base: float,
        rem: list[int],
        stores: bool,
        sound: bool,
    ) -> None:
        for i in range(start, len(pool)):
            origin_id = pool[i]
            bound = base + leg[origin_id]
            best = group.best
            pruning = best is not None and best.filled >= reachable
            if pruning and best is not None and bound >= best.cost - EPS:
                break
            give = gives[i]
            left = [r - g if r > g else 0 for r, g in zip(rem, give, strict=True)]
            penalised = pen[origin_id] > 0
            # Useless unless it frees stock or capacity other lines fought over.
            if sound and left == rem and (penalised or not stores):
                continue
            subset = (*chosen, origin_id)
            fine = True
            if not pruning or not any(left):
                solution = assign(group, subset)
                group.consider(solution)
                covered = sum(1 for n, r in zip(needs, left, strict=True) if n and not r)
                fine = solution.filled >= covered
            if len(subset) < depth:
                visit(i + 1, subset, bound, left, stores or penalised, fine)

    start = list(needs)
    for origin_id in group.free:
        for k, eligible in enumerate(group.elig):
            start[k] = max(0, start[k] - eligible.get(origin_id, 0))
    visit(0, (), 0.0, start, False, True)
