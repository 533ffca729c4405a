"""Carriers, zones, rates, labels and tracking."""

from mercato.manifest import Manifest
from mercato.shipping.api import api

MANIFEST = Manifest("shipping", routers=[api])
