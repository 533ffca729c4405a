"""Which databases the suite runs on: SQLite always, PostgreSQL when a URL is given."""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get("MERCATO_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
