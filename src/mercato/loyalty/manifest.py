"""The points programme: earning, tiers, the points ledger, points as a tender."""

from mercato.customers import timeline
from mercato.loyalty import customer_links, events, provider
from mercato.loyalty.api import api, store_api
from mercato.manifest import Job, Manifest, Subscription
from mercato.merges import CustomerMerged, CustomerMergeUndone
from mercato.orders.event_types import OrderCancelled, OrderPlaced
from mercato.payments.providers import PROVIDERS, ProviderSpec
from mercato.personal_data import DOMAINS
from mercato.returns.event_types import ReturnRefunded

MANIFEST = Manifest(
    "loyalty",
    routers=[api, store_api],
    subscriptions=[
        Subscription(OrderPlaced, events.on_order_placed),
        Subscription(OrderCancelled, events.on_order_cancelled),
        *(Subscription(type_, events.on_order_completed) for type_ in events.GRANTING),
        Subscription(ReturnRefunded, events.on_return_refunded),
        Subscription(CustomerMerged, customer_links.on_merged),
        Subscription(CustomerMergeUndone, customer_links.on_merge_undone),
    ],
    jobs=[Job("loyalty-expiry-and-tiers", events.PERIODIC_SECONDS, run=events.run_periodic)],
    contributions=[
        timeline.SOURCES("points", customer_links.timeline_entries),
        DOMAINS("loyalty", customer_links.PRIVACY),
        # Points are a payment method of every channel; refunds reach them last.
        PROVIDERS(provider.NAME, ProviderSpec(provider.LoyaltyPointsProvider, refund_last=True)),
    ],
)
