"""The settings screen's tabs and what every tab's handler shares.

Each tab shows only for the permission that reads its records through the API (the
store manager, who holds ``staff:read``, sees the tabs their role may read); each action
needs the permission the API's write endpoint needs, and the domain service checks the
rest (store scope, which roles a role may manage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.errors import Problem, ValidationProblem, validation_errors
from mercato.web import PREFIX
from mercato.web.navigation import N_

P = Permission
M = TypeVar("M", bound=BaseModel)
BASE = f"{PREFIX}/settings"


@dataclass(frozen=True)
class Tab:
    key: str
    label: str  # an English msgid, translated when shown
    path: str
    permission: Permission


TABS: tuple[Tab, ...] = (
    Tab("channels", N_("Channels"), f"{BASE}/channels", P.CHANNELS_READ),
    Tab("locations", N_("Locations"), f"{BASE}/locations", P.LOCATIONS_READ),
    Tab("staff", N_("Staff and roles"), f"{BASE}/staff", P.STAFF_READ),
    Tab("webhooks", N_("Webhooks"), f"{BASE}/webhooks", P.EVENTS_READ),
    Tab("taxes", N_("Taxes"), f"{BASE}/taxes", P.PRICING_READ),
    Tab("carriers", N_("Carriers"), f"{BASE}/carriers", P.SHIPPING_READ),
    Tab("payments", N_("Payment providers"), f"{BASE}/payments", P.PAYMENTS_READ),
    Tab("audit", N_("Audit log"), f"{BASE}/audit", P.AUDIT_READ),
)


def part_router() -> APIRouter:
    """A part's router: ``settings.router`` (under the back office prefix) includes it."""
    return APIRouter(include_in_schema=False)


def tabs_for(principal: Principal) -> list[Tab]:
    return [tab for tab in TABS if principal.has(tab.permission)]


def context(principal: Principal, tab: str, **values: Any) -> dict[str, Any]:
    """What every settings template gets: the sidebar's screen, the tabs, the open tab."""
    return {"active": "settings", "tabs": tabs_for(principal), "tab": tab, **values}


def form_errors(problem: Problem) -> dict[str, str]:
    """A refused form's messages by field name (``body.opening_hours.mon`` -> ``mon``,
    ``body.event_types[1]`` -> ``event_types``: the last named part, which the form knows),
    and the problem's own detail under ``_form``."""
    errors: dict[str, str] = {"_form": problem.detail}
    for error in problem.errors:
        parts = re.split(r"[.\[\]]", str(error.get("field", "")))
        named = [p for p in parts if p and not p.isdigit()]
        name = named[-1] if named else ""
        if name and name not in errors:
            errors[name] = str(error.get("reason", ""))
    return errors


def split_list(text: str) -> list[str]:
    """A comma- or space-separated form field as a list (currencies, countries, locales)."""
    return [part for part in text.replace(",", " ").split() if part]


def parse(model: type[M], **values: Any) -> M:
    """A form's values as the API's request model: the same rules, and a refusal as the
    same 422 problem (fields named ``body.<field>``) the API would answer."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = validation_errors(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        )
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        raise ValidationProblem(detail, errors=errors) from exc
