"""Keys and the fragments servers echo of them never survive in an error, its chain, or a log line."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import AuthenticationError, InvalidRequestError, LLMClient, LLMError
from llmkit.middleware import LoggingMiddleware
from llmkit.providers import provider_class
from llmkit.redaction import fingerprint, redact, scrub_exception
from llmkit.request import build_request
from llmkit.testing import FakeLLMServer, Fault, RequestInfo

# Not shaped like sk-/gsk_/AIza keys, so only knowing the key finds it (as for a corporate proxy's keys).
KEY = "corpLEAK-test-0123456789abcdef-zzQQ"
SHORT = "tiny-key-7"  # under 16 characters: redacted as a whole token only


def leaks(text: str, key: str = KEY) -> list[str]:
    """The pieces of ``key`` a reader could learn from ``text``: the key, its first 8 or last 4 characters."""
    return [piece for piece in (key, key[:8], key[-4:]) if piece in text]


# -- redact ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}.",
        f"Bearer {KEY}",
        f"x-api-key:{KEY};",  # glued to other text: a long key is found anywhere
        f"https://proxy.test/v1?key={KEY}&x=1",
        f'{{"error": {{"message": "bad key \\"{KEY}\\""}}}}',
    ],
)
def test_a_whole_key_is_replaced_by_its_fingerprint(text: str) -> None:
    out = redact(text, (KEY,))
    assert not leaks(out) and fingerprint(KEY) in out


@pytest.mark.parametrize(
    ("echo", "after"),
    [
        # OpenAI's form: the first 8 characters, stars, the last 4.
        (f"Incorrect API key provided: {KEY[:8]}{'*' * 40}{KEY[-4:]}. You can find your API key at", ". You"),
        (f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}", ""),  # the corpLEAK****zzQQ
        (f"Incorrect API key provided: {KEY[:5]}{'*' * 39}{KEY[-3:]}.", "."),
        (f"key '{KEY[:6]}...{KEY[-4:]}' is not valid", "' is not valid"),  # a proxy's ellipsis
        (f"key {KEY[:6]}\u2026{KEY[-4:]} revoked", " revoked"),
        (f"the key ending in ****{KEY[-4:]} was revoked", " was revoked"),  # a suffix only
        (f"key {KEY[:10]}*** expired", " expired"),  # a prefix only
        (f"Incorrect API key provided: ${{{KEY[:8]}***{KEY[-4:]}}}", "}"),  # braces around the echo
    ],
)
def test_echoed_fragments_of_a_key_are_replaced_by_its_fingerprint(echo: str, after: str) -> None:
    out = redact(echo, (KEY,))
    assert not leaks(out), out
    assert fingerprint(KEY) + after in out


def test_stars_that_are_not_an_echo_of_the_key_stay() -> None:
    for text in ("a *** b", "**bold** and ***", f"{KEY[:2]}***x", "wait...", "sk-*** is a placeholder"):
        assert redact(text, (KEY,)) == text


def test_short_keys_are_redacted_only_as_whole_tokens() -> None:
    assert redact(f"bad key: {SHORT}.", (SHORT,)) == f"bad key: {fingerprint(SHORT)}."
    assert redact(f"key={SHORT}&a=b", (SHORT,)) == f"key={fingerprint(SHORT)}&a=b"
    for text in (f"{SHORT}7 is another key", f"my{SHORT}", f"{SHORT}-b"):
        assert redact(text, (SHORT,)) == text
    # "word" is a 4-character key: it is not cut out of "keyword".
    assert redact("keyword: word", ("word",)) == f"keyword: {fingerprint('word')}"


@pytest.mark.parametrize("key", ["k", "x", "ab", "key"])
def test_keys_under_four_characters_are_not_redacted_so_no_word_is_mangled(key: str) -> None:
    text = "the keyword argument 'max_tokens' is invalid: a key was expected"
    assert redact(text, (key,)) == text


def test_redact_is_idempotent_and_keeps_the_generic_shapes() -> None:
    text = f"{KEY} and {KEY[:8]}****{KEY[-4:]} and {SHORT} and sk-test-abcdefgh1234 and AIzaTESTabcdef12"
    once = redact(text, (KEY, SHORT, "word"))
    assert redact(once, (KEY, SHORT, "word")) == once
    assert not leaks(once) and SHORT not in once and "sk-test-abcdefgh1234" not in once
    assert "AIzaTESTabcdef12" not in once and "[redacted]" in once


# -- scrub_exception ---------------------------------------------------------------------------------


class Detailed(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.detail = {"errors": [{"msg": text}], "code": 401}
        self.raw = text.encode()


class Frozen(Exception):
    """An exception whose attributes cannot be set: scrubbing must not fail on it."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(name)


def test_scrub_exception_redacts_args_attributes_and_the_whole_chain() -> None:
    try:
        try:
            try:
                raise Detailed(f"upstream said {KEY[:8]}****{KEY[-4:]}")
            except Detailed as inner:
                raise KeyError(f"lookup of {KEY}") from inner
        except KeyError:
            raise LLMError(f"Incorrect API key provided: {KEY}", provider="openai") from None
    except LLMError as caught:
        error = caught
    error.add_note(f"while using {KEY}") if hasattr(error, "add_note") else None
    assert error.__context__ is not None  # chained implicitly too ("from None" only hides it)
    assert scrub_exception(error, (KEY,)) is error
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__, chain=True))
    shown += str(error) + repr(error) + error.message + str(error.args)
    context = error.__context__
    assert isinstance(context, KeyError) and isinstance(context.__cause__, Detailed)
    detailed = context.__cause__
    shown += repr(context.args) + repr(detailed.args) + repr(detailed.detail) + repr(detailed.raw)
    assert not leaks(shown), shown
    assert detailed.detail["code"] == 401 and fingerprint(KEY) in shown


def test_scrub_exception_is_idempotent_and_safe_on_any_exception() -> None:
    cyclic_a, cyclic_b = ValueError(KEY), RuntimeError(KEY)
    cyclic_a.__context__, cyclic_b.__context__ = cyclic_b, cyclic_a
    frozen = Frozen(KEY)
    for error in (cyclic_a, frozen, OSError(2, KEY), SystemExit(KEY), KeyboardInterrupt()):
        scrub_exception(error, (KEY,))
        first = repr(error.args)
        scrub_exception(error, (KEY,))
        assert repr(error.args) == first and KEY not in first
    assert scrub_exception(ValueError("nothing secret"), ()).args == ("nothing secret",)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
def test_scrub_exception_reaches_into_exception_groups() -> None:
    group = ExceptionGroup("two failed", [ValueError(KEY), TypeError(f"{KEY[:8]}***{KEY[-4:]}")])  # noqa: F821
    scrub_exception(group, (KEY,))
    assert not leaks("".join(traceback.format_exception(group)))


# -- real SDK error chains from the fake server ---------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def echo_fragment(info: RequestInfo) -> Fault:
    """A 401 as OpenAI words it, built from the key the request carried."""
    key = info.key or ""
    return Fault(status=401, message=f"Incorrect API key provided: {key[:8]}{'*' * 24}{key[-4:]}.")


def echo_whole_key(info: RequestInfo) -> Fault:
    """A proxy that puts the whole key in a 400."""
    return Fault(status=400, message=f"Unknown key '{info.key}' for this route")


def everything_shown(error: BaseException) -> str:
    """What ``logger.exception`` prints, and what code holding the chain can read off it."""
    parts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    cause = error.__cause__
    while cause is not None:
        parts += [repr(cause.args), repr(getattr(cause, "body", None)), str(getattr(cause, "message", ""))]
        response = getattr(cause, "response", None)
        if response is not None:
            parts += [response.text, repr(dict(response.headers))]
            parts += [repr(dict(response.request.headers)), str(response.request.url)]
        request = getattr(cause, "request", None)
        if request is not None:
            parts += [repr(dict(request.headers)), str(request.url)]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


def adapter_error(provider: str, server: FakeLLMServer) -> LLMError:
    """The error a provider adapter raises for one call with KEY: the SDK's exception is its cause."""
    adapter = provider_class(provider)(base_url=getattr(server, f"{provider}_base_url"))
    sdk_client = adapter.create_client(KEY)
    try:
        adapter.complete(sdk_client, build_request("Hi", model="test-model", max_tokens=16))
    except LLMError as error:
        return error
    finally:
        adapter.close_client(sdk_client)
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("reply", "expected"), [(echo_fragment, AuthenticationError), (echo_whole_key, InvalidRequestError)]
)
def test_a_real_sdk_error_chain_is_scrubbed(
    server: FakeLLMServer, provider: str, reply: Any, expected: type
) -> None:
    server.reply = reply
    error = adapter_error(provider, server)
    assert isinstance(error, expected) and type(error.__cause__).__module__.startswith(provider)
    before = everything_shown(error)
    assert leaks(before)  # the SDK's exception holds the server's text (and the request's key header)
    assert scrub_exception(error, (KEY,)) is error
    after = everything_shown(error)
    assert not leaks(after), after
    assert fingerprint(KEY) in str(error) and error.status_code == server.requests[0].status
    scrub_exception(error, (KEY,))
    assert everything_shown(error) == after


def test_the_logging_middleware_redacts_the_failure_line(caplog: pytest.LogCaptureFixture) -> None:
    request = build_request("Hi", model="gpt-4o-mini")

    def failing(_: Any) -> Any:
        raise AuthenticationError("Incorrect API key provided: sk-test-abcdefgh1234wxyz", provider="openai")

    middleware = LoggingMiddleware("INFO", provider="openai")
    with caplog.at_level(logging.INFO, logger="llmkit.middleware"), pytest.raises(AuthenticationError):
        middleware(request, failing)
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert "abcdefgh1234" not in record.getMessage() and "[redacted]" in record.getMessage()
    assert "abcdefgh1234" not in str(record.llmkit)  # type: ignore[attr-defined]


def test_through_the_client_no_fragment_reaches_the_error_or_the_log(
    server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply = echo_fragment
    with (
        caplog.at_level(logging.DEBUG, logger="llmkit"),
        LLMClient(
            provider="openai",
            api_keys=[KEY],
            base_url=server.openai_base_url,
            max_retries=0,
            log_level="INFO",
        ) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.complete("Hi")
    assert not leaks(everything_shown(caught.value) + str(caught.value.message) + caplog.text)
