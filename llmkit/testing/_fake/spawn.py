"""Run the fake server in a child process (benchmarks: no shared GIL with the load)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import IO, Any

from .buckets import ServerLimits
from .replies import Fault, ReplyValue, entry_to_json, fault_to_json

__all__ = ["SpawnedFakeServer", "config_from_kwargs", "spawn_fake_server"]

_PLAIN = ("host", "port", "latency", "stream_interval", "seed", "slow_seconds",
          "fault_retry_after", "log_limit", "batch_time_scale", "batch_seconds", "batch_queue_limit")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def config_from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``FakeLLMServer`` keyword arguments into the JSON of ``--config``."""
    config: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in _PLAIN:
            config[name] = value
        elif name == "limits":
            config[name] = None if value is None else asdict(value)
        elif name == "key_limits":
            config[name] = {key: asdict(limit) for key, limit in (value or {}).items()}
        elif name in ("valid_keys", "forbidden_keys", "out_of_credit_keys"):
            config[name] = None if value is None else sorted(value)
        elif name == "fault_rates":
            config[name] = {str(kind): rate for kind, rate in (value or {}).items()}
        else:
            raise TypeError(f"spawn() cannot pass {name!r} to a child process")
    return config


def kwargs_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`config_from_kwargs`."""
    kwargs = dict(config)
    if kwargs.get("limits") is not None:
        kwargs["limits"] = ServerLimits(**kwargs["limits"])
    if "key_limits" in kwargs:
        kwargs["key_limits"] = {k: ServerLimits(**v) for k, v in kwargs["key_limits"].items()}
    if "fault_rates" in kwargs:
        kwargs["fault_rates"] = {int(k) if k.isdigit() else k: v
                                 for k, v in kwargs["fault_rates"].items()}
    return kwargs


class SpawnedFakeServer:
    """A fake server running in a child process, driven over its admin endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url
        self.openai_base_url = url + "/v1"
        self.anthropic_base_url = url

    @property
    def pid(self) -> int:
        return self.process.pid

    def _call(self, method: str, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"content-type": "application/json"})
        with _NO_PROXY.open(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """Like ``FakeLLMServer.stats()`` (status codes back as ints)."""
        stats: dict[str, Any] = self._call("GET", "/_fake/stats")
        stats["by_status"] = {int(k): v for k, v in stats["by_status"].items()}
        return stats

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log, as dicts."""
        return list(self._call("GET", "/_fake/log")["requests"])

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def script(self, *entries: ReplyValue) -> None:
        self._call("POST", "/_fake/script", {"entries": [entry_to_json(e) for e in entries]})

    def add_fault(self, fault: Fault, times: int | None = None) -> None:
        self._call("POST", "/_fake/faults", {"fault": fault_to_json(fault), "times": times})

    def batch_jobs(self) -> list[dict[str, Any]]:
        """Like ``FakeLLMServer.batch_jobs()``: every batch created, oldest first."""
        return list(self._call("GET", "/_fake/batches")["batches"])

    def close(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 5 s); idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if os.name != "nt" else signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SpawnedFakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def spawn_fake_server(ready_timeout: float = 20.0, **kwargs: Any) -> Iterator[SpawnedFakeServer]:
    """Start ``python -m llmkit.testing.fake_server`` and yield a handle to it."""
    config = config_from_kwargs(kwargs)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "llmkit.testing.fake_server", "--config", json.dumps(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    line = _read_line(process.stdout, ready_timeout)
    spawned = SpawnedFakeServer(process, line.split(" ", 1)[-1].strip())
    try:
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake server did not start (said {line!r})")
        yield spawned
    finally:
        spawned.close()


def _read_line(stream: IO[bytes], timeout: float) -> str:
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].decode(errors="replace") if lines else ""
