"""One cart per shopper across channels."""

from mercato.carts import customer_links, service
from mercato.carts.api import api
from mercato.carts.models import Cart
from mercato.customers import timeline
from mercato.manifest import Manifest, Subscription
from mercato.merges import follow_merges
from mercato.orders.event_types import OrderCustomerLinked
from mercato.personal_data import DOMAINS
from mercato.settings import Settings


def _configure(settings: Settings) -> None:
    service.configure_tax_provider(settings.tax_provider)


MANIFEST = Manifest(
    "carts",
    routers=[api],
    subscriptions=[
        *follow_merges("carts", [Cart]),
        # A guest order joined a profile: so does its guest cart.
        Subscription(OrderCustomerLinked, customer_links.on_order_linked),
    ],
    contributions=[
        timeline.SOURCES("carts", customer_links.timeline_entries),
        DOMAINS("carts", customer_links.PRIVACY),
    ],
    configure=_configure,
)
