"""Signatures, sealed secrets, the documented verification code and the back-off schedule."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import mercato.webhooks
from mercato.webhooks import signing
from mercato.webhooks.config import WebhookConfig
from mercato.webhooks.worker import backoff_seconds

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"id":"e1","type":"order.placed","time":"2026-01-01T00:00:00+00:00","version":1,"data":{}}'

Verifier = Callable[[str, bytes, str], bool]


def _documented_verifiers() -> list[Verifier]:
    """The receiver code shown in docs/webhooks.md and in the package docstring."""
    guide = (ROOT / "docs" / "webhooks.md").read_text()
    [from_guide] = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    docstring = mercato.webhooks.__doc__ or ""
    block = docstring.split("does the same)::\n", 1)[1].split("\nThe HMAC", 1)[0]
    found: list[Verifier] = []
    for source in (from_guide, textwrap.dedent(block)):
        namespace: dict[str, Any] = {}
        exec(compile(source, "<documented verifier>", "exec"), namespace)
        found.append(namespace["verify"])
    return found


def test_documented_receiver_code_accepts_mercato_signatures_and_refuses_the_rest() -> None:
    secret = signing.generate_secret()
    now = int(time.time())
    header = signing.signature_header([secret], now, BODY)
    stale = signing.signature_header([secret], now - 301, BODY)
    future = signing.signature_header([secret], now + 301, BODY)
    for verify in [*_documented_verifiers(), signing.verify]:
        assert verify(secret, BODY, header)
        assert not verify(secret, BODY + b" ", header)
        assert not verify(signing.generate_secret(), BODY, header)
        assert not verify(secret, BODY, stale)  # a replay of an old request
        assert not verify(secret, BODY, future)
        assert not verify(secret, BODY, f"v1={signing.signature(secret, now, BODY)}")
        assert not verify(secret, BODY, "garbage")


def test_header_format_and_rotation_grace() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    header = signing.signature_header([new, old], 1_767_225_600, BODY)
    t, first, second = header.split(",")
    assert t == "t=1767225600"
    assert re.fullmatch(r"v1=[0-9a-f]{64}", first) and re.fullmatch(r"v1=[0-9a-f]{64}", second)
    for secret in (old, new):
        assert signing.verify(secret, BODY, header, now=1_767_225_600 + 299)


def test_secrets_are_sealed_under_the_installation_key() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_") and len(secret) == 6 + 43
    sealed = signing.seal(secret, secret_key="installation one")
    assert secret not in sealed and secret[6:] not in sealed
    assert signing.unseal(sealed, secret_key="installation one") == secret
    assert signing.unseal(sealed, secret_key="installation two") is None
    assert signing.secret_hint(secret) == "whsec_..." + secret[-4:]


CONFIG = WebhookConfig(backoff_base_seconds=10, backoff_cap_seconds=3600, jitter=0.2)


@given(attempt=st.integers(min_value=1, max_value=200), rand=st.floats(0, 1))
def test_backoff_doubles_within_the_jitter_band_up_to_the_cap(attempt: int, rand: float) -> None:
    delay = backoff_seconds(attempt, CONFIG, rand)
    nominal = min(3600.0, 10 * 2.0 ** min(attempt - 1, 60))
    assert nominal * 0.8 - 1e-9 <= delay <= nominal * 1.2 + 1e-9
    assert delay <= 3600 * 1.2 + 1e-9
    assert backoff_seconds(attempt + 1, CONFIG, rand) >= delay  # never shorter than before


def test_backoff_schedule_of_the_defaults() -> None:
    middle = [backoff_seconds(n, WebhookConfig(), 0.5) for n in range(1, 11)]
    assert middle == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]


def test_lease_must_outlive_a_call() -> None:
    with pytest.raises(ValidationError, match="lease_seconds"):
        WebhookConfig(timeout_seconds=5, lease_seconds=10)
