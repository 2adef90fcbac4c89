"""What the logging settings switch on: ``global.log_level`` (``LLM_LOG_LEVEL``), ``global.enable_logging``.

llmkit's records go to the ``llmkit`` logger and its children, each with a
NullHandler, so by default the program's own logging configuration decides
what is shown (``logging.basicConfig(level=logging.DEBUG)`` shows everything).

* ``enable_logging`` (default true): every client logs one line per request
  through ``llmkit.middleware`` (:class:`~llmkit.LoggingMiddleware`: key
  fingerprint, model, latency, tokens, attempts; never a key), at DEBUG, or at
  INFO when ``log_level`` is INFO or above; failures at WARNING. False: no
  request lines (``LLMClient(log_level=...)`` still adds them).
* ``log_level`` (default unset): the level of the ``llmkit`` logger, unless
  the program set that logger's level itself; and, while the program has set
  up no logging at all (the root logger has no handler), a handler that
  writes llmkit's records to stderr. Unset: llmkit configures nothing.

The ``instructor`` logger gets a NullHandler: llmkit raises instructor's
failures as StructuredOutputError, and instructor's own ERROR record of them
("Max retries exceeded ...") would otherwise reach stderr through Python's
last-resort handler in a program that set up no logging. A program that did
set up logging still receives instructor's records.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkit.config.settings import GlobalSettings

__all__ = ["apply_logging_settings", "request_line_level"]

PACKAGE_LOGGER = "llmkit"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_level_set_by_llmkit: int | None = None


class _StderrUntilConfigured(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to stderr while the root logger has no handler (then the program's handlers do)."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the program set up logging: the record reaches its handlers already
        self.stream = sys.stderr  # the current one (pytest and others swap it)
        super().emit(record)


def _quiet_by_default(name: str) -> None:
    foreign = logging.getLogger(name)
    if not any(isinstance(h, logging.NullHandler) for h in foreign.handlers):
        foreign.addHandler(logging.NullHandler())


def request_line_level(settings: GlobalSettings) -> int | None:
    """The level of the per-request line for a client built from ``settings``; None: no line."""
    if not settings.enable_logging:
        return None
    configured = logging.getLevelName(settings.log_level) if settings.log_level else logging.DEBUG
    return logging.DEBUG if configured <= logging.DEBUG else logging.INFO


def apply_logging_settings(settings: GlobalSettings) -> int | None:
    """Configure the ``llmkit`` logger as ``settings`` say; returns :func:`request_line_level`."""
    global _level_set_by_llmkit

    _quiet_by_default("instructor")
    if settings.enable_logging and settings.log_level:
        package = logging.getLogger(PACKAGE_LOGGER)
        level = logging.getLevelName(settings.log_level)
        if package.level in (logging.NOTSET, _level_set_by_llmkit):  # never override the program's choice
            package.setLevel(level)
            _level_set_by_llmkit = level
        if not any(isinstance(h, _StderrUntilConfigured) for h in package.handlers):
            handler = _StderrUntilConfigured()
            handler.setFormatter(logging.Formatter(_FORMAT))
            package.addHandler(handler)
    return request_line_level(settings)
