"""Data subject requests: export and erasure across every domain."""

from mercato.manifest import Manifest
from mercato.privacy.api import api

MANIFEST = Manifest("privacy", routers=[api])
