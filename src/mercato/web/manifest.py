"""The back office's routers: each screen module contributes one."""

from mercato.manifest import Manifest
from mercato.web import account, home

MANIFEST = Manifest("web", routers=[account.router, home.router])
