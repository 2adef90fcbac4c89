"""Base URLs: the warning for plain ``http://`` to another machine."""

from __future__ import annotations

import ipaddress
import logging

__all__ = ["warn_if_insecure"]

logger = logging.getLogger("llmkit.providers")
logger.addHandler(logging.NullHandler())

_LOCAL_HOSTS = ("localhost", "host.docker.internal")


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def warn_if_insecure(base_url: str | None, provider: str) -> bool:
    """Log a warning when ``base_url`` is plain ``http://`` to a host that is not this machine.

    Keys and prompts would cross the network unencrypted. Returns whether it warned.
    """
    if not base_url or not base_url.lower().startswith("http://"):
        return False
    from urllib.parse import urlsplit

    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    if _is_local_host(host):
        return False
    logger.warning(
        "%s base_url %s uses plain http:// to %s: API keys and prompts travel unencrypted; use https://",
        provider, base_url, host,
    )  # fmt: skip
    return True
