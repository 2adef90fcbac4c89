"""The :class:`FakeLLMServer` object: a real HTTP server in a thread, and its controls.

Public through :mod:`llmkit.testing.fake_server` (which documents it) and :mod:`llmkit.testing`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from .batch_jobs import BatchFault
from .buckets import ServerLimits
from .engine import Engine
from .faults import FaultRule
from .handler import FakeHTTPServer
from .log import RequestRecord
from .replies import Fault, ReplyFunction, ReplyValue
from .spawn import SpawnedFakeServer, spawn_fake_server

__all__ = ["FakeLLMServer"]

logger = logging.getLogger("llmkit.testing.fake_server")
logger.addHandler(logging.NullHandler())


class FakeLLMServer:
    """A fake OpenAI + Anthropic API server running in a background thread.

    Args:
        host, port: where to listen; ``port=0`` picks a free port.
        reply: ``fn(RequestInfo) -> str | ToolCallReply | Fault`` answering chat
            requests that no script entry answers; ``None`` echoes.
        limits: per-key limits applied to every key, enforced in their ``style``
            (strict ``"per_second"`` windows by default); ``None``: unlimited.
        key_limits: per-key overrides of ``limits``.
        valid_keys: the accepted keys; ``None`` accepts any non-empty key.
        forbidden_keys: keys answered with 403.
        out_of_credit_keys: keys whose account has no credit left: every request
            gets the provider's billing error (OpenAI 429 ``insufficient_quota``,
            Anthropic 402 ``billing_error``, Gemini 429 prepaid credits depleted).
        latency: seconds to wait before every API reply (0: none).
        stream_interval: seconds between streamed content deltas (0: none).
        fault_rates: random faults, ``{500: 0.05, 429: 0.05, "drop": 0.02, ...}``:
            the probability of each per chat request; keys are 4xx/5xx statuses,
            ``"drop"``, ``"slow"`` (waits ``slow_seconds``), ``"malformed"``,
            ``"stream_drop"`` and ``"stream_error"`` (break streams after one delta).
        seed: seed of the random faults (``None``: unseeded).
        slow_seconds: the delay of a ``"slow"`` random fault.
        fault_retry_after: the ``retry-after`` of random 429s, in seconds.
        clock: the rate limiter's clock (seconds, monotonic); inject one in tests.
            Per-second and per-minute windows are aligned on an injected clock's whole
            seconds and minutes; with the real clock, on the wall clock's (as a provider's
            windows are, which makes Anthropic's whole-second reset stamps exact).
        wall_clock: Unix time, read once to map ``clock`` to wall time (Anthropic's
            RFC 3339 reset headers); inject one with ``clock`` for exact timestamps.
        log_limit: how many records :attr:`requests` keeps (the most recent;
            ``None``: all); :meth:`stats` counts every request regardless.
        batch_time_scale: how much faster time runs for the batch APIs (OpenAI Files
            and Batches, Anthropic Message Batches, Gemini Batch Mode) than ``clock``:
            at the default 1000, a batch's "24 h" window is 86 s and a batch ends in 0.6 s.
        batch_seconds: how long a batch takes, in that scaled time (requests are
            processed in order, evenly over it); 0: at once.
        batch_queue_limit: the requests a key may have in batches not ended yet
            (the providers' enqueued-work limits, counted in requests); over it a new
            batch is refused as the provider refuses it. None: no limit.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply: ReplyFunction | None = None,
        limits: ServerLimits | None = None,
        key_limits: Mapping[str, ServerLimits] | None = None,
        valid_keys: Collection[str] | None = None,
        forbidden_keys: Collection[str] = (),
        out_of_credit_keys: Collection[str] = (),
        latency: float = 0.0,
        stream_interval: float = 0.0,
        fault_rates: Mapping[int | str, float] | None = None,
        seed: int | None = None,
        slow_seconds: float = 1.0,
        fault_retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        log_limit: int | None = 100_000,
        batch_time_scale: float = 1000.0,
        batch_seconds: float = 600.0,
        batch_queue_limit: int | None = None,
    ) -> None:
        self._address = (host, port)
        self._engine = Engine(
            reply=reply, limits=limits, key_limits=key_limits, valid_keys=valid_keys,
            forbidden_keys=forbidden_keys, out_of_credit_keys=out_of_credit_keys, latency=latency,
            stream_interval=stream_interval, fault_rates=fault_rates, seed=seed,
            slow_seconds=slow_seconds, fault_retry_after=fault_retry_after, clock=clock,
            wall_clock=wall_clock, log_limit=log_limit, batch_time_scale=batch_time_scale,
            batch_seconds=batch_seconds, batch_queue_limit=batch_queue_limit,
        )
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # Lifecycle ----------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        """Bind and serve in a daemon thread; return ``self``. No-op if running."""
        with self._lock:
            if self._server is not None:
                return self
            server = FakeHTTPServer(self._address, self._engine)
            thread = threading.Thread(target=server.serve_until_stopped, daemon=True,
                                      name=f"FakeLLMServer:{server.server_address[1]}")
            thread.start()
            self._server, self._thread = server, thread
        logger.debug("fake server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.stop_serving()
        if thread is not None:
            thread.join(timeout=5)

    close = stop

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<FakeLLMServer {where}>"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (raises ``RuntimeError`` before :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("FakeLLMServer is not running: call start() or use `with`")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What ``openai.OpenAI(base_url=...)`` takes: ``url + "/v1"``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What ``anthropic.Anthropic(base_url=...)`` takes: ``url``."""
        return self.url

    # Behaviour -------------------------------------------------------------------
    @property
    def reply(self) -> ReplyFunction | None:
        """The reply function (settable; ``None`` echoes)."""
        return self._engine.reply

    @reply.setter
    def reply(self, fn: ReplyFunction | None) -> None:
        self._engine.reply = fn

    @property
    def latency(self) -> float:
        """Seconds added before every API reply (settable)."""
        return self._engine.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._engine.latency = seconds

    def script(self, *entries: ReplyValue) -> FakeLLMServer:
        """Queue replies, one per chat request, first in first out, across providers.

        Entries are text, :class:`ToolCallReply` or :class:`Fault`; a fault with
        ``key=``/``provider=`` waits for a request it applies to.
        """
        self._engine.book.script(entries)
        return self

    @property
    def pending(self) -> list[ReplyValue]:
        """The script entries not consumed yet."""
        return self._engine.book.pending()

    def add_fault(self, fault: Fault, times: int | None = None) -> FaultRule:
        """Apply ``fault`` to every matching request (or the next ``times``) until removed."""
        return self._engine.book.add_rule(fault, times)

    def remove_fault(self, rule: FaultRule) -> None:
        self._engine.book.remove_rule(rule)

    def add_batch_fault(self, fault: BatchFault, times: int | None = 1) -> FakeLLMServer:
        """Make the next ``times`` batches created (None: all) go wrong as ``fault`` says
        (expire, fail some requests, fail validation, drop result downloads)."""
        self._engine.batches.book.add_fault(fault, times)
        return self

    def batch_jobs(self) -> list[dict[str, Any]]:
        """Every batch created, oldest first: ``{"id", "provider", "key", "model", "custom_ids",
        "created", "outcome", "cancelled", "metadata"}`` (``outcome`` None while it runs)."""
        return self._engine.batches.book.snapshot()

    # Inspection ----------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, oldest first (a copy)."""
        return self._engine.log.records()

    def requests_for(self, key: str) -> list[RequestRecord]:
        """The requests that carried API key ``key``."""
        return [r for r in self._engine.log.records() if r.key == key]

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_status": {200: n, ...}, "by_key", "by_provider", "dropped",
        "input_tokens", "output_tokens", "peak_in_flight": {key: n}, "rate_limits":
        {style: {"admitted": n, "refused": n}}}`` (what each enforcement style let
        through and refused, counting only keys with limits)."""
        return self._engine.stats()

    def reset(self) -> None:
        """Clear the log, the script, the fault rules and all rate-limit state."""
        self._engine.reset()

    # Subprocess mode -------------------------------------------------------------
    @staticmethod
    @contextmanager
    def spawn(**kwargs: Any) -> Iterator[SpawnedFakeServer]:
        """Run a server in a child process (same keyword arguments, minus ``reply``,
        ``clock`` and ``wall_clock``); yield a handle with ``url``, ``stats()``, ``reset()``..."""
        with spawn_fake_server(**kwargs) as spawned:
            yield spawned
