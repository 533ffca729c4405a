"""Cart to order around the payment call (the flow is ``flows.checkout``); fraud screening."""

from mercato.checkout.api import api
from mercato.manifest import Manifest

MANIFEST = Manifest("checkout", routers=[api])
