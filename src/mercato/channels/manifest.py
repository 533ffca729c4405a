"""Ways of selling, their settings and keys."""

from mercato.channels import subscribers
from mercato.channels.api import api
from mercato.manifest import Manifest, Subscription

MANIFEST = Manifest(
    "channels",
    routers=[api],
    subscriptions=[
        # A channel ships from its locations' countries: keep that list current.
        Subscription("location.created", subscribers.on_location_changed),
        Subscription("location.updated", subscribers.on_location_changed),
    ],
)
