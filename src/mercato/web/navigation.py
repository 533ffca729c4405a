"""The back office's screens as the sidebar lists them, each behind the permission that
opens it: a role sees only the screens it may use (and the pages refuse the others)."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.auth.permissions import Permission, Role
from mercato.auth.principal import Principal
from mercato.web import PREFIX

P = Permission


def N_(message: str) -> str:
    """Marks a label for translation where it is shown, not where it is defined."""
    return message


@dataclass(frozen=True)
class Screen:
    key: str
    label: str  # an English msgid, translated when shown
    path: str
    permission: Permission


SCREENS: tuple[Screen, ...] = (
    Screen("home", N_("Home"), f"{PREFIX}/", P.ORDERS_READ),
    Screen("orders", N_("Orders"), f"{PREFIX}/orders", P.ORDERS_READ),
    Screen("fulfilment", N_("Fulfilment"), f"{PREFIX}/fulfilment", P.ORDERS_READ),
    Screen("inventory", N_("Inventory"), f"{PREFIX}/inventory", P.INVENTORY_READ),
    Screen("catalog", N_("Catalog"), f"{PREFIX}/catalog", P.CATALOG_READ),
    Screen("customers", N_("Customers"), f"{PREFIX}/customers", P.CUSTOMERS_READ),
    Screen("support", N_("Support"), f"{PREFIX}/support", P.SUPPORT_READ),
    Screen("promotions", N_("Promotions"), f"{PREFIX}/promotions", P.PROMOTIONS_READ),
    Screen("settings", N_("Settings"), f"{PREFIX}/settings", P.STAFF_READ),
)


def screens_for(principal: Principal) -> list[Screen]:
    return [screen for screen in SCREENS if principal.has(screen.permission)]


def first_screen(principal: Principal) -> str:
    """Where a user lands after signing in: the first screen their role may open."""
    allowed = screens_for(principal)
    return allowed[0].path if allowed else f"{PREFIX}/account"


ROLE_LABELS: dict[Role, str] = {
    Role.OWNER: N_("Owner"),
    Role.ADMIN: N_("Administrator"),
    Role.STORE_MANAGER: N_("Store manager"),
    Role.STORE_ASSOCIATE: N_("Store associate"),
    Role.SUPPORT_AGENT: N_("Support agent"),
    Role.ANALYST: N_("Analyst"),
    Role.INTEGRATION: N_("Integration"),
}
