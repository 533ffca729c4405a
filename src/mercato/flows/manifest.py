"""The flows' periodic work: abandoned checkouts, unfinished compensations, captures."""

from mercato.flows import cancellation, capture, checkout
from mercato.manifest import Job, Manifest

MANIFEST = Manifest(
    "flows",
    jobs=[
        Job("abandon-checkouts", 60.0, run_outside=checkout.abandon_stale_checkouts),
        Job("finish-compensations", 60.0, run_outside=checkout.finish_compensations),
        Job("expire-pickups", 300.0, run_outside=cancellation.expire_pickups),
        Job("capture-shipped", 120.0, run_outside=capture.capture_sweep),
        Job("capture-delivered-cod", 300.0, run_outside=capture.capture_delivered_cod),
    ],
)
