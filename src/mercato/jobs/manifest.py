"""Long work started from the back office, with its progress and report."""

from mercato.jobs import service
from mercato.manifest import Job, Manifest

MANIFEST = Manifest(
    "jobs",
    jobs=[Job("expire-background-files", 3600.0, run=service.expire_files)],
)
