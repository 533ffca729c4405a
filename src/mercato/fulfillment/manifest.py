"""Routing, per-location tasks, shipments and tracking."""

from mercato.fulfillment import customer_links, events
from mercato.fulfillment.api import api
from mercato.manifest import Job, Manifest, Subscription
from mercato.orders import workflows
from mercato.personal_data import DOMAINS

MANIFEST = Manifest(
    "fulfillment",
    routers=[api],
    subscriptions=[
        Subscription("order.confirmed", events.on_order_confirmed),
        Subscription("shipment.tracking_updated", events.on_tracking_updated),
    ],
    jobs=[
        Job("expire-pickups", 300.0, run_outside=events.expire_pickups),
        Job("capture-shipped", 120.0, run_outside=workflows.capture_sweep),
        Job("capture-delivered-cod", 300.0, run_outside=events.capture_delivered_cod),
    ],
    contributions=[DOMAINS("fulfillment", customer_links.PRIVACY)],
)
