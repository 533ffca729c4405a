"""Ways of selling, their settings and keys."""

from mercato.channels import subscribers
from mercato.channels.api import api
from mercato.locations.event_types import LocationCreated, LocationUpdated
from mercato.manifest import Manifest, Subscription

MANIFEST = Manifest(
    "channels",
    routers=[api],
    subscriptions=[
        # A channel ships from its locations' countries: keep that list current.
        Subscription(LocationCreated, subscribers.on_location_changed),
        Subscription(LocationUpdated, subscribers.on_location_changed),
    ],
)
