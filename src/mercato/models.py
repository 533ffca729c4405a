"""Imports every domain's tables so that ``Base.metadata`` is complete (migrations, tests)."""

from mercato import events, merges  # noqa: F401
from mercato.auth import models as auth_models  # noqa: F401
from mercato.carts import models as cart_models  # noqa: F401
from mercato.catalog import models as catalog_models  # noqa: F401
from mercato.channels import models as channel_models  # noqa: F401
from mercato.customers import models as customer_models  # noqa: F401
from mercato.fulfillment import models as fulfillment_models  # noqa: F401
from mercato.idempotency import IdempotencyRecord  # noqa: F401
from mercato.inventory import models as inventory_models  # noqa: F401
from mercato.locations import models as location_models  # noqa: F401
from mercato.loyalty import models as loyalty_models  # noqa: F401
from mercato.marketing import models as marketing_models  # noqa: F401
from mercato.orders import models as order_models  # noqa: F401
from mercato.payments import models as payment_models  # noqa: F401
from mercato.pricing import models as pricing_models  # noqa: F401
from mercato.privacy import models as privacy_models  # noqa: F401
from mercato.promotions import models as promotion_models  # noqa: F401
from mercato.returns import models as return_models  # noqa: F401
from mercato.shipping import models as shipping_models  # noqa: F401
from mercato.support import models as support_models  # noqa: F401
from mercato.webhooks import models as webhook_models  # noqa: F401
