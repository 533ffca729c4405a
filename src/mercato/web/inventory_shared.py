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
