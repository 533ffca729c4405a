"""Products, variants, categories and translations."""

from mercato.catalog.api import api, media
from mercato.manifest import Manifest

MANIFEST = Manifest("catalog", routers=[api, media])
