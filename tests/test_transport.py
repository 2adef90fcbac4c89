"""llmkit's own HTTP (llmkit.transport): the watchdog's movable timers, what goes on the wire, decoding,
and the async guard (a deadline or an abort ends an async call; the caller's own cancellation passes).

Real HTTP on 127.0.0.1 throughout: the fake provider server, and a small stdlib server for the
encodings the fake does not send. Waits that must not end a call are a few tenths of a second;
every bound is loose, and pytest-timeout ends a test that would hang.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import ssl
import threading
import time
import zlib
from collections.abc import Iterator

import pytest

from llmkit import AsyncLLMClient, LLMClient
from llmkit.config import load_settings
from llmkit.errors import MalformedResponseError, PoolClosedError, RequestTimeoutError, StreamError
from llmkit.providers._sse import SSEEvent, SSEParser, json_data
from llmkit.testing import FakeLLMServer
from llmkit.transport import Endpoint, HttpCall, watchdog
from llmkit.transport.wire import ReplyHeaders, Target, ssl_context

pytestmark = pytest.mark.timeout(30)


# -- the watchdog's timers ----------------------------------------------------------------------


def test_a_timer_fires_at_its_due_time_and_a_cancelled_one_never():
    fired, never = threading.Event(), threading.Event()
    watchdog.arm(time.monotonic() + 0.05, fired.set)
    watchdog.arm(time.monotonic() + 0.05, never.set).cancel()
    assert fired.wait(5)
    assert not never.wait(0.2)


def test_a_timer_moved_later_does_not_fire_at_its_old_time():
    fired = threading.Event()
    timer = watchdog.arm(time.monotonic() + 0.05, fired.set)
    timer.due(time.monotonic() + 3600)
    assert not fired.wait(0.3)
    timer.due(time.monotonic())  # earlier than it is filed under: filed again
    assert fired.wait(5)


def test_a_paused_timer_waits_until_it_is_due_again():
    fired = threading.Event()
    timer = watchdog.arm(time.monotonic() + 0.05, fired.set)
    timer.pause()
    assert not fired.wait(0.3)  # its old time passed while it was paused
    timer.due(time.monotonic() + 0.05)
    assert fired.wait(5) and timer.fired


def test_a_timer_moved_earlier_fires_at_the_earlier_time():
    fired = threading.Event()
    timer = watchdog.arm(time.monotonic() + 3600, fired.set)
    timer.due(time.monotonic() + 0.05)
    assert fired.wait(5)


def test_timers_armed_and_cancelled_in_turn_do_not_wake_the_watchdog_each_time():
    """A call arms a timer for its deadline and cancels it when it ends: the watchdog thread,
    asleep until an earlier deadline, is woken only for a deadline before that one (waking it
    every call cost a sequential call ~85 us in thread switches)."""
    dog = watchdog._Watchdog()
    notified = 0
    real_notify = dog._wake.notify

    def counting_notify(n: int = 1) -> None:
        nonlocal notified
        notified += 1
        real_notify(n)

    dog._wake.notify = counting_notify  # type: ignore[method-assign]
    for _ in range(200):
        dog.arm(time.monotonic() + 600, lambda: None).cancel()
        time.sleep(0.0005)  # the thread, if woken, has time to run
    assert notified <= 2  # the first timer starts the thread; asleep for the grace time after it
    fired = threading.Event()
    dog.arm(time.monotonic() + 0.05, fired.set)  # earlier than it sleeps until: woken for it
    assert fired.wait(5)


def test_the_watchdog_sleeps_until_woken_once_idle(monkeypatch):
    monkeypatch.setattr(watchdog, "IDLE_GRACE", 0.05)
    dog = watchdog._Watchdog()
    fired = threading.Event()
    dog.arm(time.monotonic() + 0.01, fired.set)
    assert fired.wait(5)
    ends = time.monotonic() + 5
    while dog._sleeping_until != float("inf") and time.monotonic() < ends:
        time.sleep(0.01)
    assert dog._sleeping_until == float("inf")  # nothing to do: no wake-ups while llmkit is idle
    again = threading.Event()
    dog.arm(time.monotonic() + 0.01, again.set)
    assert again.wait(5)


# -- the wire ---------------------------------------------------------------------------------------


def test_reply_headers_are_case_insensitive_and_repeats_are_joined():
    headers = ReplyHeaders.of([(b"X-Request-ID", b"req_1"), (b"Set-Thing", b"a"), (b"set-thing", b"b"),
                               (b"X-Note", "café".encode())])  # fmt: skip
    assert headers.get("x-request-id") == headers["X-REQUEST-ID"] == "req_1"
    assert "X-Request-Id" in headers and "nope" not in headers and headers.get("nope") is None
    assert headers["set-thing"] == "a, b"
    assert headers["x-note"] == "café"


def test_request_headers_are_the_fixed_ones_then_the_calls_own():
    target = Target("http://127.0.0.1:8080/v1/")
    assert (target.scheme, target.host, target.port, target.prefix) == (b"http", b"127.0.0.1", 8080, "/v1")
    headers = dict(target.header_list({"Authorization": "Bearer sk-test-1", "Accept": "application/json"},
                                      b"{}"))  # fmt: skip
    assert headers[b"host"] == b"127.0.0.1:8080"
    assert headers[b"authorization"] == b"Bearer sk-test-1"
    assert headers[b"accept"] == b"application/json"  # the call's own wins, once
    assert headers[b"content-length"] == b"2" and headers[b"content-type"] == b"application/json"


def test_an_http_endpoint_loads_no_certificates_and_would_refuse_any_tls():
    context = ssl_context(b"http")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() == []


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x"]}', '  {"b": null}\n', "[1]", '"s"', "3"])
def test_json_data_reads_what_json_loads_reads(text):
    assert json_data(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', "[DONE]"])
def test_json_data_refuses_what_json_loads_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        json_data(text)


def test_sse_a_byte_order_mark_split_across_chunks_and_str_chunks():
    parser = SSEParser()
    wire = "\ufeffevent: note\r\ndata: héllo\r\n\r\ndata: 🌍\n\n".encode()
    got = [event for i in range(len(wire)) for event in parser.feed(wire[i : i + 1])] + parser.close()
    assert got == [SSEEvent("héllo", "note"), SSEEvent("🌍")]
    assert SSEParser().feed("data: x\n\n") == [SSEEvent("x")]


# -- encodings, from a small server of our own ------------------------------------------------------

BODY = json.dumps({"answer": "squeezed " * 50}).encode()


class _Encoded(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # the stdlib handler's name
        self.rfile.read(int(self.headers["content-length"]))
        coding = self.path.rsplit("/", 1)[-1]
        body = {"gzip": gzip.compress(BODY), "deflate": zlib.compress(BODY),
                "rawdeflate": zlib.compress(BODY)[2:-4], "br": b"\x0b\x02\x80"}[coding]  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-encoding", "deflate" if coding == "rawdeflate" else coding)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 7):  # small chunks: decoded as they come
            piece = body[start : start + 7]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def encoded() -> Iterator[Endpoint]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Encoded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = Endpoint("openai", f"http://127.0.0.1:{server.server_address[1]}/v1")
    yield endpoint
    endpoint.close()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "rawdeflate"])
def test_a_compressed_reply_is_decoded(encoded, coding):
    reply = encoded.send(HttpCall(f"/{coding}", {"q": 1}, timeout=10))
    assert reply.status == 200 and reply.body == BODY
    with encoded.stream(HttpCall(f"/{coding}", {"q": 1}, timeout=10)) as (opened, chunks):
        assert b"".join(chunks) == BODY and opened.status == 200


def test_an_encoding_we_did_not_ask_for_is_malformed_not_retried(encoded):
    with pytest.raises(MalformedResponseError, match="'br'"):
        encoded.send(HttpCall("/br", {"q": 1}, timeout=10))


def test_a_compressed_reply_decoded_in_asyncio(encoded):
    async def run() -> bytes:
        return (await encoded.asend(HttpCall("/gzip", {"q": 1}, timeout=10))).body

    assert asyncio.run(run()) == BODY


# -- deadlines and aborts of streams ----------------------------------------------------------------


@pytest.fixture(scope="module")
def slow() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(stream_interval=0.1) as server:
        yield server


def make(server: FakeLLMServer) -> LLMClient:
    return LLMClient("openai", api_keys=["sk-test-transport-1"], base_url=server.openai_base_url,
                     settings=load_settings(environ={}), max_retries=0)  # fmt: skip


def test_a_slow_reader_is_not_a_slow_server(slow):
    """chunk_timeout counts from when the reader asks for the next chunk: a caller busy with each
    piece for longer than chunk_timeout still gets the whole stream."""
    with make(slow) as client:
        pieces = []
        for text in client.stream("one two three four", chunk_timeout=0.3):
            pieces.append(text)
            time.sleep(0.5)
        assert "".join(pieces) == "one two three four"


def test_an_async_stream_whose_tokens_stop_coming_ends_at_its_chunk_timeout(slow):
    async def run() -> None:
        async with AsyncLLMClient.wrap(make(slow)) as client:
            with pytest.raises((StreamError, RequestTimeoutError), match="in time"):
                async for _ in client.stream("one two three four", chunk_timeout=0.03):
                    pass

    asyncio.run(run())


def test_cancelling_an_async_stream_is_the_callers_cancellation(slow):
    async def run() -> None:
        async with AsyncLLMClient.wrap(make(slow)) as client:

            async def read() -> None:
                async for _ in client.stream("one two three four five six seven"):
                    pass

            task = asyncio.ensure_future(read())
            await asyncio.sleep(0.25)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.status()["in_use_clients"] == 0

    asyncio.run(run())


def test_an_abort_between_two_chunks_ends_the_next_read_not_the_callers_code(slow):
    """close() after its timeout aborts the endpoint; a reader busy with a chunk (awaiting
    something of its own) is not cancelled there: its next read raises PoolClosedError."""
    client = make(slow)

    async def run() -> str:
        async with AsyncLLMClient.wrap(client) as aclient:
            stream = aclient.stream("one two three four five six")
            first = await stream.__anext__()
            client._pool.provider.abort()  # what close(timeout) does to calls still on the wire
            await asyncio.sleep(0.3)  # the caller's own await: not cancelled
            with pytest.raises((StreamError, PoolClosedError)) as caught:
                async for _ in stream:
                    pass
            assert isinstance(caught.value, PoolClosedError) or isinstance(caught.value.__cause__,
                                                                            PoolClosedError)  # fmt: skip
            return first

    assert asyncio.run(run()) == "one "


# -- a cold start -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_plain_call_and_stream_import_no_sdk_and_no_httpx2(slow, provider):
    """The lean path is llmkit's own HTTP over httpcore2: a new process's first call imports no SDK
    (nor httpx2, the SDKs' client layer: 20 ms of a cold start; nor asyncio, ~15 ms, nor
    pydantic-settings with no settings file); the SDK comes with Response.raw."""
    import subprocess
    import sys

    url = slow.openai_base_url if provider == "openai" else slow.anthropic_base_url
    code = f"""
import sys, llmkit
client = llmkit.LLMClient({provider!r}, api_keys=["sk-test-cold-1"], base_url={url!r})
assert client.complete("hi").content == "hi"
assert "".join(client.stream("one two")) == "one two"
print(sorted({{m.split(".")[0] for m in sys.modules}}
             & {{"openai", "anthropic", "instructor", "httpx2", "asyncio", "pydantic_settings"}}))
_ = client.complete("hi").raw.model  # the SDK's object, built on first use
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"openai", "anthropic"}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", f"[{provider!r}]"]
