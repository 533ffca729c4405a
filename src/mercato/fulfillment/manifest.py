"""Routing, per-location tasks, shipments and tracking."""

from mercato.fulfillment import customer_links, events
from mercato.fulfillment.api import api
from mercato.manifest import Manifest, Subscription
from mercato.orders.event_types import OrderConfirmed
from mercato.personal_data import DOMAINS
from mercato.shipping.event_types import TrackingUpdated

MANIFEST = Manifest(
    "fulfillment",
    routers=[api],
    subscriptions=[
        Subscription(OrderConfirmed, events.on_order_confirmed),
        Subscription(TrackingUpdated, events.on_tracking_updated),
    ],
    contributions=[DOMAINS("fulfillment", customer_links.PRIVACY)],
)
