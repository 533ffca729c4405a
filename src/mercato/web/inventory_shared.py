"""What the inventory and fulfilment pages share: the user's locations, how variants
read, SKUs typed into forms, and service refusals shown beside a form's fields."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.orm import Session

from mercato.auth.principal import Principal
from mercato.catalog import service as catalog
from mercato.errors import Problem, ValidationProblem
from mercato.locations import service as locations
from mercato.locations.api import location_out
from mercato.locations.schemas import LocationOut
from mercato.web.navigation import N_


def visible_locations(session: Session, principal: Principal) -> list[LocationOut]:
    """The locations this user works with: store staff their own, everyone else all."""
    if principal.location_ids is None:
        ids = locations.all_ids(session)
    else:
        ids = sorted(principal.location_ids)
    return [location_out(x) for x in locations.get_locations(session, ids)]


def variant_labels(
    session: Session, ids: Iterable[int], language: str
) -> dict[int, dict[str, str]]:
    """SKU and the variant's name in the user's language, by variant id."""
    infos = catalog.variant_infos(session, ids)
    names = catalog.variant_labels(session, infos, language)
    return {
        vid: {"sku": info.sku, "name": names.get(vid, info.product_name)}
        for vid, info in infos.items()
    }


def variant_for_sku(session: Session, sku: str, field: str = "sku") -> int:
    """Staff type or scan a SKU; the services take the variant's id."""
    found = catalog.variant_ids_by_sku(session, [sku.strip()])
    if not found:
        raise ValidationProblem.field(field, f"no variant has the SKU {sku.strip()!r}")
    return next(iter(found.values()))


_INDEX = re.compile(r"\[\d+\]")


def form_errors(problem: Problem) -> dict[str, str]:
    """A service's refusal as messages beside the form's fields (``body.lines[0].quantity``
    shows at ``quantity``) and one above the form."""
    errors = {"form": problem.detail}
    for error in problem.errors:
        name = _INDEX.sub("", error["field"]).rsplit(".", 1)[-1]
        errors.setdefault(name, error["reason"])
    return errors


def is_form_problem(problem: Problem) -> bool:
    """What the user can correct in the form; refusals (403) and missing records (404)
    stay error pages."""
    return problem.status in (409, 422)


def int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


# How the statuses, reasons and conditions the services return read on the inventory and
# fulfilment pages (the services speak in codes; a code not listed shows as it is).
STATUS_NAMES: dict[str, str] = {
    # purchase orders, transfers
    "open": N_("open"),
    "partially_received": N_("partially received"),
    "received": N_("received"),
    "cancelled": N_("cancelled"),
    "draft": N_("draft"),
    "shipped": N_("shipped"),
    # fulfilment tasks and their lines, shipments
    "picking": N_("picking"),
    "packed": N_("packed"),
    "awaiting_transfer": N_("awaiting a transfer"),
    "ready_for_pickup": N_("ready for pickup"),
    "picked_up": N_("picked up"),
    "handed_over": N_("handed over"),
    "rejected": N_("rejected"),
    "in_transit": N_("in transit"),
    "delivered": N_("delivered"),
    "exception": N_("delivery problem"),
    "returned_to_sender": N_("returned to sender"),
    "voided": N_("voided"),
    # returns
    "requested": N_("requested"),
    "approved": N_("approved"),
    "inspected": N_("inspected"),
    "refunded": N_("refunded"),
    "closed": N_("closed"),
    "restock": N_("back on the shelf"),
    "to_vendor": N_("set aside for the vendor"),
    "wrong_item": N_("wrong item"),
    "not_as_described": N_("not as described"),
    "changed_mind": N_("changed their mind"),
    "size_fit": N_("size or fit"),
    "other": N_("other"),
    # ledger movements
    "receipt": N_("receipt"),
    "sale": N_("sale"),
    "return": N_("return"),
    "adjustment": N_("adjustment"),
    "count": N_("count"),
    "transfer_out": N_("transfer out"),
    "transfer_in": N_("transfer in"),
    "damage": N_("damage"),
    "damaged": N_("damaged"),
    "reservation": N_("held"),
    "release": N_("released"),
}
