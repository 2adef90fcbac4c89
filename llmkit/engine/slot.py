"""One API key in the pool: its SDK client, limiter and health, and the lease of an attempt."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.engine.health import KeyHealth
from llmkit.engine.limiter import KeyLimiter, Reservation
from llmkit.redaction import fingerprint

if TYPE_CHECKING:
    from llmkit.providers.base import Provider

__all__ = ["KeySlot", "Lease"]


class KeySlot:
    """One API key: its SDK client (made on first use), limiter (maybe shared by a group) and health."""

    def __init__(self, index: int, api_key: str, provider: Provider, limiter: KeyLimiter, health: KeyHealth):
        self.index = index
        self.key_id = fingerprint(api_key)
        self._api_key = api_key
        self._provider = provider
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.limiter = limiter
        self.health = health
        self.requests = 0

    def __repr__(self) -> str:
        return f"KeySlot({self.key_id}, in_flight={self.limiter.in_flight})"

    @property
    def provider_name(self) -> str:
        return self._provider.name

    @property
    def secret(self) -> str:
        """The key itself: only for building clients and redacting messages."""
        return self._api_key

    @property
    def client(self) -> Any:
        """The SDK client of this key, created once and reused (connections too)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    client = self._provider.create_client(self._api_key)
                    self._provider.warm_client(client)
                    self._client = client
                client = self._client
        return client

    def reset_after_fork(self) -> None:
        """In a forked child: a new SDK client on next use (the parent's shares its sockets),
        and no attempt in flight (the parent's are not ours)."""
        self._client = None
        self._client_lock = threading.Lock()
        self.limiter.in_flight = 0
        self.health.probe_in_flight = False
        reset_shared = getattr(self.limiter.shared, "reset_after_fork", None)
        if reset_shared is not None:
            reset_shared()

    def status(self, now: float) -> dict[str, Any]:
        """This key's line in ``status()`` (the caller holds the pool's lock)."""
        limiter = self.limiter.snapshot(now)
        health = self.health.snapshot(now)
        cap = limiter["max_concurrent"]
        at_cap = cap is not None and limiter["in_flight"] >= cap
        return {
            "client_id": self.key_id,
            "limit_group": self.limiter.name,
            "is_available": health["state"] == "healthy" and not at_cap,
            "requests": self.requests,
            **health,
            **limiter,
        }

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            self._provider.close_client(client)


@dataclass(slots=True)
class Lease:
    """A key handed to one attempt, with the capacity reserved for it (and the call's wire deadline)."""

    slot: KeySlot
    reservation: Reservation
    deadline: float | None = None  # time.monotonic() by which the whole call must end (max_time)

    def sending(self, now: float) -> None:
        """The request leaves now (pool clock): what its reply's headers say is measured from
        here, not from the grant (with many threads waiting, a granted call may be scheduled
        tens of milliseconds later, and a window's end then looked that much early)."""
        self.reservation.sent_at = now

    @property
    def client(self) -> Any:
        return self.slot.client
