"""ImagePart URLs: only http(s) and data: URLs are accepted, however the part is built."""

from __future__ import annotations

import base64

import pytest

from llmkit import InvalidRequestError, LLMClient
from llmkit.testing import FakeLLMServer
from llmkit.types import ImagePart, Message, MessageRole

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/etc/passwd",
        "example.com/cat.png",
        "https://",
        "  https://example.com/cat.png",
        "",
    ],
)
def test_image_part_refuses_urls_that_are_not_http_or_data(url: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"https://, http:// or data:") as caught:
        ImagePart(url=url)
    assert "ImagePart.from_path" in str(caught.value)  # says what to do with a local file
    with pytest.raises(InvalidRequestError, match=r"https://, http:// or data:"):
        ImagePart.from_url(url)


def test_image_part_refuses_a_url_that_is_not_a_string() -> None:
    with pytest.raises(InvalidRequestError, match="must be a string"):
        ImagePart(url=b"https://example.com/cat.png")  # type: ignore[arg-type]


def test_image_part_keeps_http_urls_and_decodes_data_urls() -> None:
    assert ImagePart(url="https://example.com/cat.png").url == "https://example.com/cat.png"
    assert ImagePart(url="HTTP://example.com/cat.png").url == "HTTP://example.com/cat.png"
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    part = ImagePart(url=data_url)  # as from_url: decoded, so every provider gets bytes in its own form
    assert (part.data, part.media_type, part.url) == (PNG, "image/png", None)
    assert part == ImagePart.from_url(data_url)
    with pytest.raises(InvalidRequestError, match="base64"):
        ImagePart(url="data:image/png,rawtext")


def test_a_file_url_is_refused_before_anything_is_sent() -> None:
    with (
        FakeLLMServer() as server,
        LLMClient(
            provider="openai", api_keys=["sk-test-1"], base_url=server.openai_base_url, model="gpt-4o-mini"
        ) as client,
    ):
        with pytest.raises(InvalidRequestError, match="file:///etc/passwd"):
            client.complete([Message(MessageRole.USER, ["look", ImagePart(url="file:///etc/passwd")])])
        assert server.requests == []
