"""Personal data at rest: encrypted columns, blind indexes, key rotation."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from mercato import crypto, key_rotation
from mercato.customers import service
from mercato.customers.models import Customer, CustomerAddress, CustomerIdentity
from mercato.db import Database
from mercato.settings import Settings, get_settings
from tests.conftest import assert_problem
from tests.customers.conftest import Shop, register
from tests.helpers import ok

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
SECRETS = ["hana.sato@example.com", "+4930901820", "Hanako", "Satomi", "Torstraße 99"]


def _raw_dump(db: Database) -> str:
    """Every row of every customer table as the database holds it: what a dump shows."""
    tables = [
        "customers",
        "customer_identities",
        "customer_addresses",
        "customer_activity",
        "customer_merge_suggestions",
        "audit_log",
        "outbox_events",
    ]
    with db.engine.connect() as conn:
        rows = [
            repr(tuple(row))
            for table in tables
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    return "\n".join(rows)


def _populate(shop: Shop) -> dict[str, Any]:
    body = register(
        shop,
        "Hana.Sato@Example.com",
        first_name="Hanako",
        last_name="Satomi",
        phone="+49 30 901820",
    )
    address = {"line1": "Torstraße 99", "city": "Berlin", "postal_code": "10119", "country": "DE"}
    ok_address = shop.client.post(
        "/v1/store/customers/me/addresses", json=address, headers=shop.store(body["token"])
    )
    assert ok_address.status_code == 201, ok_address.text
    return body


def test_a_database_dump_reveals_no_email_phone_name_or_address(shop: Shop) -> None:
    body = _populate(shop)
    dump = _raw_dump(shop.db)
    assert dump  # the rows are there...
    for secret in SECRETS:
        assert secret not in dump
        assert secret.lower() not in dump.lower()
    assert "+4930901820"[1:] not in dump
    # ...and the API still reads them back in clear.
    profile = ok(
        shop.client.get(f"/v1/customers/{body['customer']['id']}/profile", headers=shop.staff)
    )
    assert profile["email"] == "hana.sato@example.com"
    assert profile["phone"] == "+4930901820"
    assert profile["addresses"][0]["line1"] == "Torstraße 99"
    assert sorted(i["value"] for i in profile["identities"]) == [
        "+4930901820",
        "hana.sato@example.com",
    ]


def test_stored_values_are_fernet_tokens_under_the_current_key(shop: Shop) -> None:
    _populate(shop)
    with shop.db.engine.connect() as conn:
        email, phone = conn.execute(text("SELECT email, phone FROM customers")).one()
    ring = crypto.keyring()
    assert ring.decrypt(email) == "hana.sato@example.com"
    assert ring.decrypt(phone) == "+4930901820"
    # Randomised encryption: the same value encrypts differently each time.
    assert ring.encrypt("x") != ring.encrypt("x")


def test_encrypted_columns_cannot_be_compared_in_sql() -> None:
    with pytest.raises(TypeError, match="blind index"):
        select(Customer).where(Customer.email == "a@example.com")
    with pytest.raises(TypeError, match="blind index"):
        select(CustomerIdentity).where(CustomerIdentity.value.in_(["x"]))
    select(Customer).where(Customer.email.is_(None))  # null checks stay possible


def test_blind_index_is_keyed_and_separates_kinds() -> None:
    ring = crypto.Keyring([OLD.encode()])
    other = crypto.Keyring([NEW.encode()])
    assert ring.blind_index("email", "a@example.com") == ring.blind_index("email", "a@example.com")
    assert ring.blind_index("email", "a@example.com") != other.blind_index("email", "a@example.com")
    assert ring.blind_index("email", "a@example.com") != ring.blind_index("phone", "a@example.com")
    both = crypto.Keyring([NEW.encode(), OLD.encode()])
    assert both.blind_indexes("email", "a@example.com") == [
        other.blind_index("email", "a@example.com"),
        ring.blind_index("email", "a@example.com"),
    ]


def test_development_key_is_derived_from_the_secret_key() -> None:
    settings = get_settings()
    if settings.encryption_keys:
        pytest.skip("MERCATO_ENCRYPTION_KEYS is set in this environment")
    expected = crypto.development_key(settings.secret_key)
    token = crypto.keyring().encrypt("hello")
    assert Fernet(expected).decrypt(token.encode()) == b"hello"
    assert crypto.development_key("another secret") != expected
    Fernet(crypto.development_key("another secret"))  # a valid Fernet key


def test_configured_keys_come_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_ENCRYPTION_KEYS", f" {NEW} , {OLD}")
    assert Settings().encryption_keys is not None
    get_settings.cache_clear()
    try:
        token = crypto.keyring().encrypt("hello")
        assert Fernet(NEW.encode()).decrypt(token.encode()) == b"hello"
    finally:
        monkeypatch.delenv("MERCATO_ENCRYPTION_KEYS")
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "lists no key"),
        ("not-a-key", "#1 is not a Fernet key"),
        (f"{OLD},short", "#2 is not a Fernet key"),
        (f"{OLD},{OLD}", "same key twice"),
    ],
    ids=["none", "not-a-key", "second-short", "same-twice"],  # the keys are random
)
def test_bad_key_settings_are_refused(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        crypto.parse_keys(spec)


def test_encrypted_columns_are_listed() -> None:
    columns = key_rotation.encrypted_columns()
    for expected in (
        "customers.email",
        "customers.phone",
        "customers.first_name",
        "customers.last_name",
        "customer_identities.value",
        "customer_addresses.data",
    ):
        assert expected in columns


def _raw_tokens(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        found = {
            v
            for row in conn.execute(text("SELECT email, phone, first_name FROM customers"))
            for v in row
            if v
        }
        found |= {r[0] for r in conn.execute(text("SELECT value FROM customer_identities"))}
        found |= {r[0] for r in conn.execute(text("SELECT data FROM customer_addresses"))}
    return found


def _installation_keys() -> str:
    settings = get_settings()
    return settings.encryption_keys or crypto.development_key(settings.secret_key).decode()


def test_key_rotation_re_encrypts_everything_and_keeps_lookups_working(shop: Shop) -> None:
    # What the fixture wrote under the installation's keys (the audit entries of the staff
    # it created are encrypted) moves to OLD first, as if OLD had always been the key.
    with crypto.using_keys(f"{OLD},{_installation_keys()}"), shop.db.transaction() as session:
        key_rotation.rotate_keys(session)
    with crypto.using_keys(OLD):
        body = _populate(shop)
        customer_id = body["customer"]["id"]
        before = _raw_tokens(shop.db)
        assert all(Fernet(OLD.encode()).decrypt(t.encode()) for t in before)

    with crypto.using_keys(f"{NEW},{OLD}"):
        # Before rotation: old ciphertexts read, and lookups still match the old indexes.
        with shop.db.read() as session:
            assert service.find_by_email(session, "HANA.SATO@example.com") is not None
            assert service.find_by_phone(session, "+49 30 901820") is not None
        with shop.db.transaction() as session:
            rewritten = key_rotation.rotate_keys(session, batch_size=2)
        assert rewritten >= 4  # customer, two identities, one address
        after = _raw_tokens(shop.db)
        assert not before & after

    with crypto.using_keys(NEW):  # the old key is gone for good
        for token in after:
            Fernet(NEW.encode()).decrypt(token.encode())
        with shop.db.read() as session:
            found = service.find_by_email(session, "hana.sato@example.com")
            assert found is not None and found.id == customer_id
            assert found.first_name == "Hanako"
            phone = service.find_by_phone(session, "+4930901820")
            assert phone is not None and phone.id == customer_id
            address = session.scalars(select(CustomerAddress)).one()
            assert address.data["line1"] == "Torstraße 99"
        login = shop.client.post(
            "/v1/store/customers/login",
            json={"email": "hana.sato@example.com", "password": "a long enough secret"},
            headers=shop.store(),
        )
        assert ok(login)["customer"]["id"] == customer_id
        # Rotating again with nothing new to do rewrites the rows but changes no value.
        with shop.db.transaction() as session:
            key_rotation.rotate_keys(session)
        with shop.db.read() as session:
            assert service.find_by_email(session, "hana.sato@example.com") is not None

    # Data rotated away from a key cannot be read with it any more.
    with (
        crypto.using_keys(OLD),
        shop.db.read() as session,
        pytest.raises(crypto.DecryptionError),
    ):
        session.scalars(select(Customer)).all()


def test_a_lookup_for_a_malformed_value_finds_nothing(shop: Shop) -> None:
    _populate(shop)
    with shop.db.read() as session:
        assert service.find_by_email(session, "not an email") is None
        assert service.find_by_phone(session, "call me") is None
        assert service.find_by_email(session, "other@example.com") is None
    response = shop.client.get("/v1/customers?phone=call%20me", headers=shop.staff)
    assert ok(response)["items"] == []
    assert_problem(shop.client.get("/v1/customers?phone=" + "9" * 40, headers=shop.staff), 422)
