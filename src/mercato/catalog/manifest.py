"""Products, variants, categories and translations."""

from mercato.catalog.api import api
from mercato.manifest import Manifest

MANIFEST = Manifest("catalog", routers=[api])
