"""Database engine, sessions and the declarative base shared by every domain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Numeric,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator, TypeEngine

from mercato.errors import NotFound

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT identity on PostgreSQL, INTEGER PRIMARY KEY (rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")
# A column holding another row's id: as wide as the ids it holds (a 32-bit INTEGER would
# fail the statement for an id, or a filter value, above 2**31 - 1 on PostgreSQL).
BigId = BigIntPK
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class FixedDecimal(TypeDecorator[Decimal]):
    """Exact decimals on every backend: NUMERIC on PostgreSQL, a scaled integer on SQLite.

    SQLite has no decimal type (NUMERIC columns hold floats), so amounts are stored as
    integers of ``10**-scale`` units there; sums and comparisons in SQL stay exact.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int = 4, precision: int = 18) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.scale = scale
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(value)
        if dialect.name == "sqlite":
            scaled = amount.scaleb(self.scale)
            if scaled != scaled.to_integral_value():
                raise ValueError(f"{amount} has more than {self.scale} decimals")
            return int(scaled)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return Decimal(value)


RowT = TypeVar("RowT", bound="Base")


def get_or_404(
    session: Session, model: type[RowT], key: Any, what: str, *, fresh: bool = False
) -> RowT:
    """The row of ``model`` with primary key ``key``, or a 404 "<what> not found" (e.g.
    ``what="order 7"``). ``fresh`` reads it again even when the session holds it (for
    rows other transactions change, such as an order's status)."""
    row = session.get(model, key, populate_existing=fresh)
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def locked_row(session: Session, model: type[RowT], key: Any, what: str) -> RowT:
    """The row of ``model`` with primary key ``key``, taken until commit (``FOR UPDATE`` on
    PostgreSQL; SQLite runs one writer at a time) and read afresh; a 404 naming ``what``
    (e.g. "promotion 7") when there is none."""
    row = session.get(model, key, populate_existing=True, with_for_update=True)
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself so that BEGIN IMMEDIATE is possible (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Overwrite freed content with zeros: erased personal data must not linger in free
        # space of the file (privacy.scrub empties the write-ahead log after an erasure).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writing transactions take the write lock up front: SQLite then queues writers on
        # busy_timeout instead of failing one with "database is locked" when a reader
        # upgrades. Reads stay deferred so they run concurrently under WAL.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            # A connection per worker thread: the pool must never be what requests wait on.
            **({"poolclass": StaticPool} if memory else {"pool_size": 40, "max_overflow": 40}),
        )
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # Up to max_concurrent_requests requests, some holding two connections for a moment
    # (a short read of their own beside the request's transaction), plus background jobs.
    return create_engine(url, echo=echo, pool_size=20, max_overflow=50, pool_pre_ping=True)


class Database:
    """An engine and its session factory; the application holds exactly one."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        # Called after a commit that published events (the dispatcher sets it).
        self.wake_hook: Callable[[], None] | None = None
        info = {"mercato_wake": self._wake}
        self.sessionmaker = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"),
            expire_on_commit=False,
            info=info,
        )
        self.read_sessionmaker = sessionmaker(self.engine, expire_on_commit=False, info=info)

    def _wake(self) -> None:
        if self.wake_hook is not None:
            self.wake_hook()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception."""
        with self.sessionmaker() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        with self.read_sessionmaker() as session:
            try:
                yield session
            finally:
                session.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
