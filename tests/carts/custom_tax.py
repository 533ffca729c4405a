"""A tax provider loaded by name (``MERCATO_TAX_PROVIDER=tests.carts.custom_tax:provider``)."""

from __future__ import annotations

from mercato.pricing.tax import RoundingPolicy, TableTaxProvider, TaxRule


def provider() -> TableTaxProvider:
    japan = TaxRule(
        "JP", "Japan", "Custom consumption tax", {"standard": "0.25"}, RoundingPolicy("total")
    )
    return TableTaxProvider(rules=[japan])


not_a_provider = object
