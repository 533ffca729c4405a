"""Price lists, exchange rates and taxes."""

from mercato.manifest import Manifest
from mercato.pricing.api import api

MANIFEST = Manifest("pricing", routers=[api])
