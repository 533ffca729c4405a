"""The one order system: life cycle, lines, timeline, notes, holds."""

from mercato.customers import timeline
from mercato.customers.event_types import CustomerIdentityVerified
from mercato.fulfillment.event_types import TaskCreated
from mercato.manifest import Manifest, Subscription
from mercato.merges import follow_merges
from mercato.orders import customer_links, store_api, subscribers
from mercato.orders.api import api
from mercato.orders.event_types import OrderImported, OrderPlaced
from mercato.orders.models import Order
from mercato.personal_data import DOMAINS

MANIFEST = Manifest(
    "orders",
    routers=[api, store_api.api],
    subscriptions=[
        *follow_merges("orders", [Order]),
        # Guest orders join the profile of a verified email or phone.
        Subscription(CustomerIdentityVerified, customer_links.on_identity_verified),
        Subscription(OrderPlaced, customer_links.on_guest_order),
        Subscription(OrderImported, customer_links.on_guest_order),
        Subscription(TaskCreated, subscribers.on_task_created),
    ],
    contributions=[
        timeline.SOURCES("orders", customer_links.timeline_entries),
        DOMAINS("orders", customer_links.PRIVACY),
    ],
)
