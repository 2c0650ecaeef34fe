"""Who may read metrics: a scrape with the configured bearer token, or from a configured network. The web node's
`/metrics` and each worker's metrics port ask the same question here.

Production has no default network: behind a reverse proxy on the same host every request comes from loopback, so
"loopback may scrape" would publish the metrics to the internet. `make run` (DEBUG) opens loopback."""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from django.conf import settings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _networks(specs: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def networks_invalid(specs: list[str]) -> str | None:
    """Why the list of networks cannot be used, or None."""
    try:
        _networks(tuple(specs))
    except ValueError as exc:
        return str(exc)
    return None


def _from_allowed_network(remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def _has_scrape_token(authorization: str) -> bool:
    expected = settings.METRICS_SCRAPE_TOKEN
    scheme, _, presented = authorization.partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), expected)


def scrape_allowed(*, remote_addr: str, authorization: str) -> bool:
    return _has_scrape_token(authorization) or _from_allowed_network(remote_addr)
