"""Staff, roles, sign-in and the audit log."""

from mercato.auth import throttle
from mercato.auth.api import api
from mercato.manifest import Job, Manifest

MANIFEST = Manifest(
    "auth",
    routers=[api],
    jobs=[Job("prune-auth-throttles", 3600.0, run=throttle.prune)],
)
