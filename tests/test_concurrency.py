"""64 threads calling complete, stream and status while keys are disabled and re-enabled."""

from __future__ import annotations

import random
import threading
import time

from llmkit import LLMClient, LLMError
from llmkit.testing import FakeLLMServer, Fault

KEYS = [f"sk-test-conc-{i}-aaaaaaaa" for i in range(3)]


def check_status(status: dict) -> None:
    assert status["total_clients"] == 3
    assert 0 <= status["available_clients"] <= 3
    assert 0 <= status["in_use_clients"] <= 3
    for key in status["client_statuses"]:
        assert key["in_flight"] >= 0
        assert key["state"] in ("healthy", "cooling", "open", "half-open", "disabled")


def test_sixty_four_threads_with_keys_flapping_do_not_deadlock():
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def record(name: str) -> None:
        with lock:
            outcomes[name] = outcomes.get(name, 0) + 1

    with (
        FakeLLMServer(latency=0.005) as server,
        LLMClient(
            "openai", api_keys=KEYS, base_url=server.openai_base_url, retry_delay=0.01, acquire_timeout=20
        ) as client,
    ):

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for i in range(8):
                action = rng.choice(["complete", "stream", "status"])
                try:
                    if action == "complete":
                        client.complete(f"t{seed} #{i}")
                    elif action == "stream":
                        text = "".join(client.stream(f"stream {seed} {i}"))
                        assert text == f"stream {seed} {i}"
                    else:
                        check_status(client.status())
                    record(action)
                except LLMError as exc:  # typed errors are allowed; anything else fails the test
                    record(type(exc).__name__)

        def flapper() -> None:
            rng = random.Random(0)
            while not stop.is_set():
                key = rng.choice(KEYS)
                rule = server.add_fault(Fault(status=401, key=key), times=1)
                time.sleep(0.05)
                server.remove_fault(rule)
                # a 401 still on the wire may disable a key after it was re-enabled:
                # put back every disabled key, as an operator fixing keys would
                for status in client.status()["client_statuses"]:
                    if status["state"] == "disabled":
                        client.enable_key(status["client_id"])
                time.sleep(0.02)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(64)]
        control = threading.Thread(target=flapper, daemon=True)
        control.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        stop.set()
        control.join(timeout=5)
        assert not any(t.is_alive() for t in threads), "a worker is stuck: deadlock?"
        for slot in client._pool.slots:
            client.enable_key(slot.key_id)
        final = client.status()
    check_status(final)
    assert all(key["in_flight"] == 0 for key in final["client_statuses"])
    assert final["waiting_requests"] == 0
    assert sum(outcomes.values()) == 64 * 8
    assert outcomes.get("complete", 0) + outcomes.get("stream", 0) > 300
