"""The tax provider carts are taxed with: the built-in tables unless the
``MERCATO_TAX_PROVIDER`` setting names another (``package.module:factory``).

One per process, set when the application starts (:func:`configure_tax_provider`).
"""

from __future__ import annotations

import importlib

from mercato.pricing.tax import TableTaxProvider, TaxProvider

_tax_provider: TaxProvider = TableTaxProvider()


def set_tax_provider(provider: TaxProvider) -> None:
    """Replace the built-in tax tables with an external tax service."""
    global _tax_provider
    _tax_provider = provider


def tax_provider() -> TaxProvider:
    return _tax_provider


def load_tax_provider(spec: str) -> TaxProvider:
    """The provider ``package.module:factory`` returns (the factory is called with no
    arguments; a class is a factory). A bad spec is a ValueError naming it, at start-up."""
    module_name, sep, name = spec.strip().partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: expected 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: {exc}") from exc
    provider = factory()
    if not isinstance(provider, TaxProvider):
        raise ValueError(f"MERCATO_TAX_PROVIDER={spec!r}: {provider!r} has no calculate()")
    return provider


def configure_tax_provider(spec: str | None) -> None:
    """Install the provider named by the setting; unset, the current one stays."""
    if spec:
        set_tax_provider(load_tax_provider(spec))
