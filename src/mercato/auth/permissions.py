"""Roles and the permissions they grant. Every staff endpoint names one permission."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    STORE_MANAGER = "store_manager"
    STORE_ASSOCIATE = "store_associate"
    SUPPORT_AGENT = "support_agent"
    ANALYST = "analyst"
    INTEGRATION = "integration"


class Permission(StrEnum):
    CATALOG_READ = "catalog:read"
    CATALOG_WRITE = "catalog:write"
    CATALOG_IMPORT = "catalog:import"
    CHANNELS_READ = "channels:read"
    CHANNELS_WRITE = "channels:write"
    LOCATIONS_READ = "locations:read"
    LOCATIONS_WRITE = "locations:write"
    STAFF_READ = "staff:read"
    STAFF_WRITE = "staff:write"
    AUDIT_READ = "audit:read"
    INVENTORY_READ = "inventory:read"
    INVENTORY_WRITE = "inventory:write"
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    CUSTOMERS_PII = "customers:pii"
    SUPPORT_READ = "support:read"
    SUPPORT_WRITE = "support:write"
    ANALYTICS_READ = "analytics:read"
    EVENTS_READ = "events:read"
    PRICING_READ = "pricing:read"
    PRICING_WRITE = "pricing:write"
    PROMOTIONS_READ = "promotions:read"
    PROMOTIONS_WRITE = "promotions:write"
    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"
    REFUNDS_WRITE = "refunds:write"
    # Points granted by hand can be spent like money: within the role's limits (loyalty.grants).
    LOYALTY_GRANT = "loyalty:grant"
    SHIPPING_READ = "shipping:read"
    SHIPPING_WRITE = "shipping:write"
    GIFT_CARDS_WRITE = "gift_cards:write"
    WEBHOOKS_WRITE = "webhooks:write"
    PRIVACY_WRITE = "privacy:write"


P = Permission
_ALL = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: _ALL,
    Role.ADMIN: _ALL,
    Role.STORE_MANAGER: frozenset(
        {
            P.CATALOG_READ,
            P.CHANNELS_READ,
            P.LOCATIONS_READ,
            P.STAFF_READ,
            P.INVENTORY_READ,
            P.INVENTORY_WRITE,
            P.ORDERS_READ,
            P.ORDERS_WRITE,
            P.CUSTOMERS_READ,
            P.CUSTOMERS_WRITE,
            P.CUSTOMERS_PII,
            P.SUPPORT_READ,
            P.SUPPORT_WRITE,
            P.ANALYTICS_READ,
            P.PRICING_READ,
            P.PROMOTIONS_READ,
            P.PAYMENTS_READ,
            P.PAYMENTS_WRITE,
            P.REFUNDS_WRITE,
            P.LOYALTY_GRANT,
            P.SHIPPING_READ,
            P.SHIPPING_WRITE,
            P.GIFT_CARDS_WRITE,
        }
    ),
    Role.STORE_ASSOCIATE: frozenset(
        {
            P.CATALOG_READ,
            P.CHANNELS_READ,
            P.LOCATIONS_READ,
            P.INVENTORY_READ,
            P.INVENTORY_WRITE,
            P.ORDERS_READ,
            P.ORDERS_WRITE,
            P.CUSTOMERS_READ,
            P.CUSTOMERS_WRITE,
            P.CUSTOMERS_PII,
            P.SUPPORT_READ,
            P.PRICING_READ,
            P.PROMOTIONS_READ,
            P.PAYMENTS_READ,
            P.PAYMENTS_WRITE,
            P.SHIPPING_READ,
            P.SHIPPING_WRITE,
            P.GIFT_CARDS_WRITE,
        }
    ),
    Role.SUPPORT_AGENT: frozenset(
        {
            P.CATALOG_READ,
            P.CHANNELS_READ,
            P.LOCATIONS_READ,
            P.INVENTORY_READ,
            P.ORDERS_READ,
            P.CUSTOMERS_READ,
            P.CUSTOMERS_WRITE,
            P.CUSTOMERS_PII,
            P.SUPPORT_READ,
            P.SUPPORT_WRITE,
            P.PRICING_READ,
            P.PROMOTIONS_READ,
            P.PAYMENTS_READ,
            P.SHIPPING_READ,
            P.ORDERS_WRITE,
            P.LOYALTY_GRANT,
        }
    ),
    # Analysts see aggregates and pseudonymous records, never raw personal data.
    Role.ANALYST: frozenset(
        {
            P.CATALOG_READ,
            P.CHANNELS_READ,
            P.LOCATIONS_READ,
            P.INVENTORY_READ,
            P.ORDERS_READ,
            P.CUSTOMERS_READ,
            P.ANALYTICS_READ,
            P.PRICING_READ,
            P.PROMOTIONS_READ,
            P.PAYMENTS_READ,
            P.SHIPPING_READ,
        }
    ),
    Role.INTEGRATION: frozenset(
        {
            P.CATALOG_READ,
            P.CATALOG_WRITE,
            P.CATALOG_IMPORT,
            P.CHANNELS_READ,
            P.LOCATIONS_READ,
            P.INVENTORY_READ,
            P.INVENTORY_WRITE,
            P.ORDERS_READ,
            P.ORDERS_WRITE,
            P.CUSTOMERS_READ,
            P.CUSTOMERS_WRITE,
            P.EVENTS_READ,
            P.PRICING_READ,
            P.PRICING_WRITE,
            P.PROMOTIONS_READ,
            P.PAYMENTS_READ,
            P.PAYMENTS_WRITE,
            P.SHIPPING_READ,
            P.SHIPPING_WRITE,
            P.WEBHOOKS_WRITE,
        }
    ),
}

# Roles whose reach is limited to the locations assigned to the user.
LOCATION_SCOPED_ROLES = frozenset({Role.STORE_MANAGER, Role.STORE_ASSOCIATE})

# Which roles a role may create or change. Only an owner manages owners and admins.
MANAGEABLE_ROLES: dict[Role, frozenset[Role]] = {
    Role.OWNER: frozenset(Role),
    Role.ADMIN: frozenset(Role) - {Role.OWNER, Role.ADMIN},
}
