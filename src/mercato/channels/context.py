"""What a shopper-facing request knows about the channel it came through."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelContext:
    id: int
    code: str
    name: str
    type: str  # web | app | pos | marketplace | call_centre
    default_locale: str  # BCP 47, e.g. "ja-JP"
    locales: tuple[str, ...]  # every locale the channel serves, default first
    currencies: tuple[str, ...]  # ISO 4217, default first
    price_list: str | None
    location_ids: frozenset[int]
    # None: every active product; otherwise only products in these categories (or below).
    assortment_category_ids: frozenset[int] | None
    country: str | None  # the channel's home market, ISO 3166-1 alpha-2
    ship_to_countries: tuple[str, ...] = ()
    # The sell-from locations in priority order (``location_ids`` as a sequence).
    location_order: tuple[int, ...] = ()
    # Countries it ships from, priority order (carts quote shipping from these).
    ship_origins: tuple[str, ...] = ()
    # (country, currency): the currency a shopper from that country is quoted in.
    country_currencies: tuple[tuple[str, str], ...] = ()
    # Import duty and tax of cross-border parcels: "ddp" paid at checkout, "dap" on delivery.
    import_duties: str = "dap"
    # The store behind a POS channel: its sales are that store's.
    store_location_id: int | None = None

    def ship_origin(self, destination_country: str) -> str | None:
        """Domestic shipping when the channel ships from the destination country."""
        if destination_country in self.ship_origins:
            return destination_country
        return self.ship_origins[0] if self.ship_origins else None

    def ships_to(self, country: str) -> bool:
        allowed = self.ship_to_countries or ((self.country,) if self.country else ())
        return not allowed or country.upper() in allowed

    def sells_in(self, currency: str) -> bool:
        return currency.upper() in self.currencies

    @property
    def default_currency(self) -> str:
        return self.currencies[0]

    def currency_for(self, country: str | None) -> str:
        """The currency to quote a shopper from ``country`` in: the channel's rule for it,
        else its default currency."""
        wanted = dict(self.country_currencies).get((country or "").upper())
        return wanted if wanted and self.sells_in(wanted) else self.default_currency

    def match_locale(self, requested: str) -> str | None:
        """The channel's locale for ``requested`` (exact, else same language), or None."""
        wanted = requested.strip().replace("_", "-").lower()
        for loc in self.locales:
            if loc.lower() == wanted:
                return loc
        language = wanted.split("-")[0]
        for loc in self.locales:
            if loc.split("-")[0].lower() == language:
                return loc
        return None

    def pick_locale(self, requested: str | None) -> str:
        """The requested locale if the channel serves it (or its language), else the default."""
        if not requested:
            return self.default_locale
        return self.match_locale(requested) or self.default_locale
