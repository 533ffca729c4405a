"""Stock per variant and location, the ledger, holds and transfers."""

from mercato.inventory import service
from mercato.inventory.api import api
from mercato.manifest import Job, Manifest

MANIFEST = Manifest(
    "inventory",
    routers=[api],
    jobs=[Job("expire-holds", 15.0, run=lambda session: service.expire_holds(session))],
)
