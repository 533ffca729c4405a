"""Settings, the audit log: who changed what, newest first (``GET /v1/audit``), with the
API's filters in the URL so a view can be bookmarked and shared."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from mercato.auth import service
from mercato.auth.principal import Principal
from mercato.auth.schemas import AuditEntryOut
from mercato.deps import get_database
from mercato.web.pages import show, url_with
from mercato.web.session import require_page
from mercato.web.settings_tabs import P, context, part_router

router = part_router()


@router.get("/settings/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    entity_type: Annotated[str | None, Query(max_length=40)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=80)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    principal: Principal = require_page(P.AUDIT_READ),
) -> HTMLResponse:
    filters = {
        "entity_type": (entity_type or "").strip(),
        "entity_id": (entity_id or "").strip(),
        "actor_id": (actor_id or "").strip(),
        "action": (action or "").strip(),
    }
    with get_database(request).read() as session:
        result = service.list_audit(
            session,
            entity_type=filters["entity_type"] or None,
            entity_id=filters["entity_id"] or None,
            actor_id=filters["actor_id"] or None,
            action=filters["action"] or None,
            cursor=cursor,
            limit=50,
        )
        entries = [AuditEntryOut.model_validate(e) for e in result.items]
    next_url = url_with(request, cursor=result.next_cursor) if result.next_cursor else None
    changes = {
        e.id: json.dumps(e.changes, ensure_ascii=False, sort_keys=True, default=str)
        for e in entries
    }
    values = context(
        principal, "audit", entries=entries, changes=changes, next_url=next_url, filters=filters
    )
    return show(request, "settings/audit.html", values)
