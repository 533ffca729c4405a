"""The back office: server-rendered pages over the same services and flows as the API.

Pages are an adapter like ``api.py``: each handler signs the staff user in from the session
cookie, checks one permission, calls domain services or flows with that principal and
renders a template. No page runs a query of its own.
"""

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATE_DIR = WEB_DIR / "templates"
LOCALE_DIR = WEB_DIR / "locales"

# Where the back office lives and where its static files are served from.
PREFIX = "/admin"
STATIC_URL = "/static/web"
