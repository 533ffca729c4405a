"""Settings, the installation's commerce configuration: taxes, carriers (with their zones
and rate tables) and payment providers.

Taxes and payment providers are configured for the installation (``MERCATO_TAX_PROVIDER``,
provider registrations), not per record, so their tabs show what is in force; carriers are
records, and a carrier is switched on or off as ``PATCH /v1/shipping/carriers/{id}`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from mercato.auth.principal import Principal
from mercato.carts import service as carts
from mercato.deps import get_database
from mercato.payments import service as payments
from mercato.payments.api import provider_out
from mercato.pricing.tax import RATES_AS_OF, TableTaxProvider
from mercato.shipping import service as shipping
from mercato.shipping.api import carriers_out, zones_out
from mercato.shipping.schemas import CarrierPatch, RateTableOut
from mercato.web.pages import redirect, show
from mercato.web.rendering import gettext_for
from mercato.web.session import require_page
from mercato.web.settings_tabs import BASE, P, context, part_router

router = part_router()

TAX_COLUMNS = ("standard", "reduced", "food", "books")


@dataclass(frozen=True)
class TaxRuleView:
    code: str
    name: str
    tax_name: str
    rates: dict[str, Decimal]
    rounding: str
    added_at_checkout: bool


@router.get("/settings/taxes", response_class=HTMLResponse)
def taxes(
    request: Request,
    country: Annotated[str | None, Query(max_length=2)] = None,
    principal: Principal = require_page(P.PRICING_READ),
) -> HTMLResponse:
    """The tax tables carts are taxed with, by jurisdiction (a country, or a US state)."""
    provider = carts.tax_provider()
    wanted = (country or "").strip().upper()
    rules: list[TaxRuleView] = []
    if isinstance(provider, TableTaxProvider):
        for code, rule in sorted(provider.rules.items()):
            if wanted and code.partition("-")[0] != wanted:
                continue
            rules.append(
                TaxRuleView(
                    code=code,
                    name=rule.name,
                    tax_name=rule.tax_name,
                    rates=dict(rule.rates),
                    rounding=f"{rule.rounding.level} · {rule.rounding.mode}",
                    added_at_checkout=rule.added_at_checkout,
                )
            )
    values = context(
        principal,
        "taxes",
        tables=isinstance(provider, TableTaxProvider),
        provider_name=type(provider).__name__,
        rules=rules,
        columns=TAX_COLUMNS,
        rates_as_of=RATES_AS_OF,
        country=wanted,
    )
    return show(request, "settings/taxes.html", values)


@router.get("/settings/carriers", response_class=HTMLResponse)
def carriers(
    request: Request, principal: Principal = require_page(P.SHIPPING_READ)
) -> HTMLResponse:
    """Carriers with their services, zones and rate tables (``/v1/shipping/...``)."""
    with get_database(request).read() as session:
        found = carriers_out(session, shipping.list_carriers(session))
        zones = zones_out(session, shipping.list_zones(session))
        tables = [
            RateTableOut.model_validate(v)
            for v in shipping.rate_table_views(session, shipping.list_rate_tables(session))
        ]
    values = context(principal, "carriers", carriers=found, zones=zones, tables=tables)
    return show(request, "settings/carriers.html", values)


@router.post("/settings/carriers/{carrier_id}/active")
def set_carrier_active(
    request: Request,
    carrier_id: int,
    active: Annotated[bool, Form()],
    principal: Principal = require_page(P.SHIPPING_WRITE),
) -> Response:
    with get_database(request).transaction() as session:
        shipping.update_carrier(session, principal, carrier_id, CarrierPatch(active=active))
    _ = gettext_for(request).gettext
    message = _("The carrier is active.") if active else _("The carrier was switched off.")
    return redirect(request, f"{BASE}/carriers", message)


@router.get("/settings/payments", response_class=HTMLResponse)
def payment_providers(
    request: Request, principal: Principal = require_page(P.PAYMENTS_READ)
) -> HTMLResponse:
    """As ``GET /v1/payments/providers``: the providers in force, never their secrets."""
    providers = [provider_out(info) for info in payments.provider_infos()]
    values = context(principal, "payments", providers=providers)
    return show(request, "settings/payments.html", values)
