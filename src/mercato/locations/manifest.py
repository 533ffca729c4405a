"""Warehouses, stores and suppliers."""

from mercato.locations.api import api
from mercato.manifest import Manifest

MANIFEST = Manifest("locations", routers=[api])
