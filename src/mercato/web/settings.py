"""The settings screen: channels and keys, locations, staff and roles, webhooks, taxes,
carriers, payment providers and the audit log, one tab each (``settings_*.py``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.web import (
    settings_audit,
    settings_channels,
    settings_config,
    settings_locations,
    settings_shipping,
    settings_staff,
    settings_webhooks,
)
from mercato.web.pages import page_router
from mercato.web.session import require_page
from mercato.web.settings_tabs import tabs_for

router = page_router()


@router.get("/settings")
def settings(
    request: Request, principal: Principal = require_page(Permission.STAFF_READ)
) -> RedirectResponse:
    """The first tab the role may open (the sidebar shows the screen for staff:read)."""
    return RedirectResponse(tabs_for(principal)[0].path, status_code=303)


for part in (
    settings_channels,
    settings_locations,
    settings_shipping,
    settings_staff,
    settings_webhooks,
    settings_config,
    settings_audit,
):
    router.include_router(part.router)
