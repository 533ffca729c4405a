"""Home: what needs attention today (figures and lists come with the home screen)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.web.pages import page_router, show
from mercato.web.session import require_page

router = page_router()


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request, principal: Principal = require_page(Permission.ORDERS_READ)
) -> HTMLResponse:
    return show(request, "home/index.html", {"active": "home"})
