"""Cart to order around the payment call; the fraud hook."""

from mercato.checkout import service
from mercato.checkout.api import api
from mercato.manifest import Job, Manifest

MANIFEST = Manifest(
    "checkout",
    routers=[api],
    jobs=[
        Job("abandon-checkouts", 60.0, run_outside=service.abandon_stale_checkouts),
        Job("finish-compensations", 60.0, run_outside=service.finish_compensations),
    ],
)
