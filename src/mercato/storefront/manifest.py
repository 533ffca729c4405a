"""The shopper's read model: products, categories, stock near the shopper."""

from mercato.manifest import Manifest
from mercato.storefront import api, stock_api

MANIFEST = Manifest("storefront", routers=[api.api, stock_api.api])
