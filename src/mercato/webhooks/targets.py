"""Which hosts a webhook may call: never the machine itself or its private networks.

A subscription URL is chosen by whoever holds ``webhooks:write``; without a check it can
make Mercato POST to its own loopback services, the database on the private network or a
cloud metadata endpoint (server-side request forgery). Every address is refused unless it
is a public (globally routed) one, with cloud metadata addresses named explicitly because
some sit in ranges Python calls global. ``MERCATO_WEBHOOKS_ALLOW_PRIVATE_TARGETS`` lifts
the rule for local development.

The check runs twice: when the subscription is saved (an address literal or ``localhost``
is a 422) and on every delivery, when the name is resolved. The delivery's connection is
made by :class:`GuardedBackend` to the very addresses it checked, so a name that answers a
public address to a first lookup and a private one to the next (DNS rebinding) is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS, Azure, GCP, ECS task metadata, Alibaba, Oracle).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata.google.internal")


class TargetRefused(Exception):
    """A webhook target that resolves to an address webhooks may not call."""


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not call ``address`` (a few words), or None when they may."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is what is reached."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_refusal(host: str) -> str | None:
    """Why a subscription may not name ``host`` (checked without DNS), or None.

    Numeric forms the resolver accepts (``2130706433``, ``0x7f.1``) count as addresses."""
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return f"{host} is a local name"
    try:
        found = socket.getaddrinfo(name, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None  # a name: it is checked when it is resolved, at each delivery
    for entry in found:
        reason = refusal(ipaddress.ip_address(str(entry[4][0]).split("%")[0]))
        if reason is not None:
            return f"{host} is {reason}"
    return None


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """Every socket address ``host`` resolves to, or TargetRefused if any may not be called
    (``OSError`` when it does not resolve).

    One refused address refuses the name: a name with a public and a private address would
    otherwise reach the private one whenever the public one fails."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for entry in found:
        address = ipaddress.ip_address(str(entry[4][0]).split("%")[0])
        reason = refusal(address)
        if reason is not None:
            raise TargetRefused(f"refused: {host} resolves to {address}, {reason}")
    return found


def check_url(url: str) -> None:
    """Resolve the URL's host now and refuse it if any of its addresses may not be called."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    resolve(parts.hostname or "", port)


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to addresses it resolved and checked itself, never resolving twice."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for entry in found:
            address = str(entry[4][0])
            try:
                # An address literal: the parent connects to it without another lookup; TLS
                # still verifies the certificate against the URL's host name.
                return super().connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over :class:`GuardedBackend` (same TLS and pool settings)."""

    def __init__(self, limits: httpx.Limits = httpx.Limits()) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )


def proxy_mounts() -> dict[str, httpx.BaseTransport | None]:
    """The ``HTTP(S)_PROXY``/``ALL_PROXY`` transports (a custom transport turns off httpx's
    own reading of them); hosts in ``NO_PROXY`` go direct, through the guarded transport."""
    found = getproxies()
    bypass = [h.strip() for h in found.get("no", "").split(",") if h.strip()]
    if "*" in bypass:
        return {}
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        proxy = found.get(scheme)
        if proxy:
            url = proxy if "://" in proxy else f"http://{proxy}"
            mounts[f"{scheme}://"] = httpx.HTTPTransport(proxy=url)
    if mounts:
        for host in bypass:
            pattern = _bypass_pattern(host)
            if pattern is not None:
                mounts[pattern] = None
    return mounts


def _bypass_pattern(host: str) -> str | None:
    """httpx's mount pattern for a ``NO_PROXY`` entry (as httpx reads them); None for what
    it cannot express (address ranges: those are internal and refused anyway)."""
    if "/" in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address):
        pattern = f"all://[{host}]"
    elif address is not None or host.lower() == "localhost":
        pattern = f"all://{host}"
    else:
        pattern = f"all://*{host}"
    try:
        httpx.URL(pattern.replace("*", "x", 1))
    except httpx.InvalidURL:
        return None
    return pattern
