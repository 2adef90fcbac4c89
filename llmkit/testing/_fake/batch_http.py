"""What every batch endpoint of the fake server shares: the call, the endpoint-set contract, replies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .batch_jobs import BatchBook, BatchJob, BatchReply, LineResult
from .dialect_base import BadRequest, Dialect, build_output, dumps
from .replies import Fault, fault_message

if TYPE_CHECKING:
    from collections.abc import Collection

    from .faults import FaultBook
    from .log import RequestLog
    from .replies import ReplyValue, RequestInfo


class ChatEngine(Protocol):
    """What the batch endpoints use of the fake server's :class:`~.engine.Engine` (which
    imports them: this seam keeps the arrow one way)."""

    @property
    def valid_keys(self) -> Collection[str] | None: ...
    @property
    def forbidden_keys(self) -> Collection[str]: ...
    @property
    def out_of_credit_keys(self) -> Collection[str]: ...
    @property
    def book(self) -> FaultBook: ...
    @property
    def log(self) -> RequestLog: ...
    @property
    def clock(self) -> Callable[[], float]: ...

    def generated(self, info: RequestInfo) -> ReplyValue: ...

__all__ = ["BatchCall", "BatchEndpoints", "answer_line", "json_reply", "jsonl_reply"]

Handler = Callable[["BatchCall"], BatchReply]


@dataclass
class BatchCall:
    """One request to a batch endpoint: what was sent, whose key, which path parameters."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw: bytes
    key: str
    params: tuple[str, ...] = ()

    def json(self) -> Any:
        try:
            return json.loads(self.raw or b"{}")
        except ValueError as exc:
            raise BadRequest(f"We could not parse the JSON body of your request ({exc}).") from exc

    @property
    def origin(self) -> str:
        """``http://host:port`` as the client addressed the server."""
        return "http://" + (self.headers.get("host") or "127.0.0.1")


def answer_line(
    engine: ChatEngine, dialect: Dialect, path: str, custom_id: str, body: Any, key: str
) -> LineResult:
    """One request of a batch, answered as the chat endpoint at ``path`` would answer it:
    ``reply=``, a forced tool, a schema's instance or the echo (no script entries, no rate
    limits); a body the dialect refuses gets its 400, a :class:`Fault` from ``reply=`` its status."""
    request_id = dialect.request_id()
    try:
        info = dialect.parse("chat", path, body, key)
        value = engine.generated(info)
    except BadRequest as exc:
        return LineResult(custom_id, 400, dialect.error_body(400, exc.message, None), request_id=request_id)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        error = dialect.error_body(400, f"Invalid request body: {exc}", None)
        return LineResult(custom_id, 400, error, request_id=request_id)
    if isinstance(value, Fault):
        status = value.status or 500
        message, kind = fault_message(value)
        return LineResult(custom_id, status, dialect.error_body(status, message, kind), request_id=request_id)
    out = build_output(info, value, dialect.tool_id_prefix)
    return LineResult(
        custom_id, 200, dialect.reply_body(info, out, dialect.reply_id()), request_id=request_id
    )


def json_reply(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> BatchReply:
    return BatchReply(status, dumps(data).encode(), headers=headers or [])


def jsonl_reply(lines: list[Any], drop: bool = False) -> BatchReply:
    """A JSON-lines body; ``drop``: the connection breaks off halfway through it."""
    body = b"".join(dumps(line).encode() + b"\n" for line in lines)
    return BatchReply(200, body, "application/octet-stream", drop_after=len(body) // 2 if drop else None)


class BatchEndpoints:
    """One provider's batch endpoints (stateless: jobs and files live in the :class:`BatchBook`)."""

    provider: str
    dialect: Dialect
    routes: ClassVar[list[tuple[str, re.Pattern[str], str]]]  # (method, path pattern, handler's name)

    def __init__(self, book: BatchBook, engine: ChatEngine) -> None:
        self.book = book
        self.engine = engine

    def route(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]] | None:
        """The handler of ``method path`` and the path's parameters, or None."""
        for verb, pattern, name in self.routes:
            match = pattern.match(path) if verb == method else None
            if match:
                return getattr(self, name), match.groups()
        return None

    def error(self, status: int, message: str, kind: str | None = None) -> BatchReply:
        return json_reply(status, self.dialect.error_body(status, message, kind))

    def answer(
        self, chat_path: Callable[[str | None], str]
    ) -> Callable[[str, Any, str, str | None], LineResult]:
        """How this provider's requests are answered: as live chat requests at ``chat_path(model)``."""

        def answer(custom_id: str, request: Any, key: str, model: str | None) -> LineResult:
            return answer_line(self.engine, self.dialect, chat_path(model), custom_id, request, key)

        return answer

    def view(self, job: BatchJob, chat_path: Callable[[str | None], str]) -> dict[str, Any]:
        return self.book.view(job, self.answer(chat_path))

    def job_or_404(self, job_id: str) -> BatchJob | BatchReply:
        job = self.book.job(job_id)
        if job is None or job.provider != self.provider:
            return self.error(404, f"No batch found with id '{job_id}'.")
        return job
