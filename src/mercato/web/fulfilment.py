"""The fulfilment screen."""

from __future__ import annotations

from mercato.web.pages import page_router

router = page_router()
