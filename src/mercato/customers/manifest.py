"""One profile per person: identities, resolution, merges, the timeline, figures."""

from mercato.customers import customer_links, figures, timeline
from mercato.customers.api import api
from mercato.manifest import Manifest, Subscription
from mercato.orders.event_types import (
    OrderCancelled,
    OrderCustomerLinked,
    OrderImported,
    OrderPlaced,
)
from mercato.payments.event_types import PaymentRefunded
from mercato.personal_data import DOMAINS
from mercato.returns.event_types import ReturnRefunded

MANIFEST = Manifest(
    "customers",
    routers=[api],
    subscriptions=[
        # Figures follow orders; marketplace and ERP orders arrive confirmed, never
        # "placed", and count all the same (a fact per order id: seen twice counts once).
        Subscription(OrderPlaced, figures.on_order_placed),
        Subscription(OrderImported, figures.on_order_placed),
        Subscription(OrderCancelled, figures.on_order_cancelled),
        # A guest order attached to the profile of its verified email or phone.
        Subscription(OrderCustomerLinked, figures.on_order_linked),
        # Lifetime value is net of refunds.
        Subscription(PaymentRefunded, figures.on_payment_refunded),
        Subscription(ReturnRefunded, figures.on_return_refunded),
    ],
    contributions=[
        timeline.SOURCES("profile", timeline.profile_source),
        DOMAINS("customers", customer_links.PRIVACY),
    ],
)
