"""What goes on the wire for an endpoint, at httpcore2's level: the request's target and headers,
the reply's headers as a mapping, content decoding, and the TLS context.

The endpoint sends through httpcore2's connection pool itself (the pool the
SDK clients share through their ``httpx2.Client``): httpx2's client layer
(URL merging, cookies, auth flows, redirects, event hooks) cost a call about
200 µs, more than llmkit's own work, and importing httpx2 20 ms of a cold
start. What that layer did for us is here.
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from llmkit import __version__
from llmkit.errors import MalformedResponseError

__all__ = ["Inflate", "ReplyHeaders", "Target", "decoder_for", "ssl_context"]

USER_AGENT = f"llmkit/{__version__}"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Target:
    """Where an endpoint's requests go: scheme, host, port, path prefix and the fixed headers."""

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"base_url must be an http:// or https:// URL with a host, got {base_url!r}")
        raw_host = host.encode("ascii") if host.isascii() else host.encode("idna")
        port = parts.port
        netloc = f"[{host}]" if ":" in host else raw_host.decode("ascii")
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            netloc += f":{port}"
        self.scheme: bytes = scheme.encode("ascii")
        self.host: bytes = raw_host
        self.port: int | None = port
        self.prefix: str = parts.path.rstrip("/")
        self.headers: dict[str, str] = {
            "host": netloc, "accept": "*/*", "accept-encoding": "gzip, deflate",
            "user-agent": USER_AGENT, "content-type": "application/json",
        }  # fmt: skip

    def header_list(self, extra: Mapping[str, str], body: bytes) -> list[tuple[bytes, bytes]]:
        """The request's headers: the fixed ones, then ``extra`` (which wins on a name they share)."""
        headers = dict(self.headers)
        for name, value in extra.items():
            headers[name.lower()] = value
        headers["content-length"] = str(len(body))
        return [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]


class ReplyHeaders(dict):
    """A reply's headers by lower-case name, looked up case-insensitively (repeated names joined
    with ``", "``, as httpx does)."""

    __slots__ = ()

    @classmethod
    def of(cls, raw: Iterable[tuple[bytes, bytes]]) -> ReplyHeaders:
        headers = cls()
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1") if value.isascii() else _decode(value)
            previous = dict.get(headers, key)
            dict.__setitem__(headers, key, text if previous is None else f"{previous}, {text}")
        return headers

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default) if isinstance(key, str) else default

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self, key.lower() if isinstance(key, str) else key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class Inflate:
    """A gzip or deflate body, decoded as its chunks arrive."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._raw = False  # deflate without its zlib header (some servers send that)
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._inflater.decompress(chunk)
        except zlib.error:
            if self._gzip or self._raw:
                raise
            self._raw = True
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._inflater.decompress(chunk)

    def flush(self) -> bytes:
        return self._inflater.flush()


def decoder_for(headers: Mapping[str, str], provider: str) -> Inflate | None:
    """How to decode the body ``headers`` announce (None: as it is). We ask for gzip or deflate
    only; anything else cannot be read (MalformedResponseError, not retried: the call was made)."""
    coding = (headers.get("content-encoding") or "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return Inflate(gzip=coding != "deflate")
    raise MalformedResponseError(
        f"The reply from {provider} is encoded as {coding!r}; llmkit asks for gzip or deflate only",
        provider=provider,
    )


def ssl_context(scheme: bytes) -> ssl.SSLContext:
    """The TLS context of an endpoint. For ``https``: httpcore2's default (the system's CA
    certificates, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured). For ``http`` nothing is
    encrypted, and loading certificates (~20 ms) would be wasted: a context that verifies
    against no certificate at all, so that a TLS connection, should one ever be made, fails."""
    if scheme == b"https":
        import httpcore2

        return httpcore2.default_ssl_context()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
