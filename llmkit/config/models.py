"""The configuration objects: LLMConfig, RateLimit, RetryPolicy and PoolConfig.

Every object here is an immutable pydantic model (``frozen=True``,
``extra="forbid"``). Change one with ``.new(**changes)``, which returns a
validated copy, like urllib3's ``Retry.new()`` (pydantic's ``model_copy`` does
not validate: do not use it). Every field's description says what ``None`` and
``0`` mean. Invalid values raise :class:`llmkit.errors.ConfigurationError`,
never a raw pydantic ``ValidationError`` (whose text echoes the input, which may
be an API key), naming the field, the bad value and what is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self


__all__ = [
    "ConfigModel", "LLMConfig", "PoolConfig", "RateLimit", "RateLimitConfig", "RetryPolicy",
    "build", "closest", "config_error", "evolve", "safe_repr",
]


_M = TypeVar("_M", bound="ConfigModel")


# --- validation errors, made readable and safe --------------------------------


def alias_map(model: type[BaseModel]) -> dict[str, str]:
    """Map every accepted input name of ``model`` (field name or alias) to the field."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        for choice in getattr(info.validation_alias, "choices", ()):
            names[str(choice)] = name
    return names


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def closest(word: str, choices: Any) -> str:
    """The text " Did you mean 'x'?" for the choice nearest to ``word``, or "" if none."""
    import difflib

    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def safe_repr(value: Any) -> str:
    """A value for an error message; strings long enough to be an API key are hidden.

    Every real provider key is longer than 24 characters, so a key pasted in
    the wrong place (a setting's name, a section) never reaches a message.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str) and len(value) <= 24:
        return repr(value)
    if isinstance(value, str):
        return f"<a {len(value)}-character string>"
    return f"<a {type(value).__name__}>"


def _describe(model: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One line for one pydantic error: path, value, complaint, what is accepted."""
    owner, current = model, _inner_model(model)
    path = field = description = ""
    for part in error["loc"]:
        if current is not None:
            owner = current
        names = alias_map(owner)
        if isinstance(part, str) and part in names and current is not None:
            field = names[part]
            info = owner.model_fields[field]
            description = info.description or ""
            current = _inner_model(info.annotation)
        if isinstance(part, str) and part not in names and len(part) > 24:
            part = "<name hidden>"  # an unknown name from the input: maybe a pasted key
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":  # the value is never shown: a misspelt api_key?
        known = sorted(
            next(iter(getattr(info.validation_alias, "choices", ())), name)
            for name, info in owner.model_fields.items()
        )
        hint = closest(path.rsplit(".", 1)[-1], known)
        return f"{path}: unknown setting (known: {', '.join(known)}).{hint}"
    if error["type"] == "value_error":  # our own validators: the message says it all
        return f"{path}: {message}" if path else message
    shown = "<hidden>" if "key" in path.lower() else safe_repr(error.get("input"))
    line = f"{path} = {shown}: {message}"
    return f"{line}. {field}: {description}" if description else line


def config_error(exc: ValidationError, model: type[BaseModel], where: str) -> ConfigurationError:
    """Turn a pydantic ValidationError into a ConfigurationError about ``where``."""
    lines = [_describe(model, error) for error in exc.errors(include_url=False)]
    if len(lines) == 1:
        return ConfigurationError(f"Invalid {where}: {lines[0]}")
    return ConfigurationError(f"Invalid {where}:\n" + "\n".join(f"  - {x}" for x in lines))


# --- the base of every config object -------------------------------------------


def build(model: type[_M], data: Any, *, where: str | None = None) -> _M:
    """Validate ``data`` into ``model``; any error becomes one ConfigurationError.

    ``where`` names the thing for the message (default: the class name).
    """
    try:
        return model.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        # ``from None``: pydantic's own text shows the input, which may hold a key.
        raise config_error(exc, model, where or model.__name__) from None


def evolve(obj: _M, changes: Mapping[str, Any], *, where: str | None = None) -> _M:
    """Return a validated copy of ``obj`` with ``changes`` (field names or aliases)."""
    model = type(obj)
    names = alias_map(model)
    values = {name: getattr(obj, name) for name in model.model_fields}
    for key, value in changes.items():
        values[names.get(key, key)] = value
    return build(model, values, where=where)


class ConfigModel(BaseModel):
    """Base of llmkit's config objects: frozen, strict about names, ``.new()``.

    Validation errors raise ConfigurationError. Schemas are built on first use
    (``defer_build``), which keeps ``import llmkit.config`` cheap.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    def __init_subclass__(cls, init: bool = True, **kwargs: Any) -> None:
        # Subclasses say ``init=False`` so that type checkers (PEP 681) use the
        # __init__ below, which takes aliases (max_concurrent_requests=) and
        # lenient shapes (lists for tuples), instead of one made from the fields.
        super().__init_subclass__(**kwargs)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self), type(self).__name__) from None

    # Tell pydantic this __init__ adds nothing to validation, so nested models
    # are still built by pydantic-core (and errors keep their full path).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate ``obj``; errors raise ConfigurationError."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise config_error(exc, cls, cls.__name__) from None

    def new(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied (aliases accepted)."""
        return evolve(self, changes)

    if not TYPE_CHECKING:  # so that type checkers still see the models as frozen

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(
                f"{type(self).__name__} is immutable: use .new({name}=...) for a changed copy")

        def __delattr__(self, name: str) -> None:
            raise AttributeError(f"{type(self).__name__} is immutable")


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read True as 1
        raise ValueError(f"a number is needed, not {value}")
    return value


_Int = Annotated[int, BeforeValidator(_no_bool)]
_Float = Annotated[float, BeforeValidator(_no_bool)]
_NO_LIMIT = "None means no limit of this kind; 0 is refused: use None for no limit"


class LLMConfig(ConfigModel, init=False):
    """Request settings; every ``None`` field means "use the client's default".

    ``client.complete(messages, **config.to_dict())`` passes the set fields on.
    """

    temperature: _Float | None = Field(
        default=None, ge=0, le=2,
        description="Sampling temperature from 0 to 2; 0 is the most deterministic. "
        "None: the client's default.")
    max_tokens: _Int | None = Field(
        default=None, ge=1,
        description="Most tokens one reply may have, an integer >= 1 (0 is refused). "
        "None: the client's default.")
    max_retries: _Int | None = Field(
        default=None, ge=0,
        description="Retries after the first attempt, an integer >= 0; 0: never retry. "
        "None: the client's default.")
    retry_delay: _Float | None = Field(
        default=None, ge=0,
        description="Seconds before the first retry (later waits grow), >= 0; "
        "0: no backoff wait. None: the client's default.")
    timeout: _Float | None = Field(
        default=None, gt=0,
        description="Seconds to wait for a complete reply, > 0 (0 is refused). "
        "None: the client's default.")
    system_prompt: str | None = Field(
        default=None,
        description="System message put before the conversation. None: the client's "
        "default (if any); an empty string: no system prompt.")

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set (not None), as keyword arguments for ``complete``."""
        return {name: value for name, value in self if value is not None}

    def merged(self, other: LLMConfig | None) -> LLMConfig:
        """A copy where every field ``other`` sets (not None) overrides this one."""
        return self if other is None else self.new(**other.to_dict())


class RateLimit(ConfigModel, init=False):
    """Limits of one API key (or one group of keys), kept on the client side so calls wait, not fail.

    Give the per-minute numbers the provider's dashboard shows; nothing else
    needs tuning. Every limit is per minute. ``None`` means no limit of that
    kind; ``0`` is refused (use None). Sends are paced over the second, never
    in a minute's burst, so a provider that enforces its per-minute number over
    shorter windows is not crossed; the burst adapts to what the server takes
    (see :mod:`llmkit.engine.limiter`). Also known as ``RateLimitConfig``.
    """

    requests_per_minute: _Int | None = Field(
        default=None, gt=0, description=f"Requests per minute, an integer >= 1. {_NO_LIMIT}.")
    input_tokens_per_minute: _Int | None = Field(
        default=None, gt=0,
        description=f"Input (prompt) tokens per minute, >= 1 (Anthropic's ITPM). {_NO_LIMIT}.")
    output_tokens_per_minute: _Int | None = Field(
        default=None, gt=0,
        description=f"Output tokens per minute, >= 1 (Anthropic's OTPM). {_NO_LIMIT}.")
    tokens_per_minute: _Int | None = Field(
        default=None, gt=0,
        description="Input plus output tokens per minute, >= 1 (OpenAI's TPM). "
        f"{_NO_LIMIT}.")
    max_concurrent: _Int | None = Field(
        default=None, gt=0,
        validation_alias=AliasChoices("max_concurrent", "max_concurrent_requests"),
        description="Requests in flight at once, >= 1 (also accepted as "
        f"max_concurrent_requests). {_NO_LIMIT}.")
    burst_seconds: _Float | None = Field(
        default=None, gt=0, le=60,
        description="None (the default): the burst adapts, from one request up to a second of "
        "the limit while the server takes it, halved on a 429 it did not expect. A number "
        "(more than 0, at most 60) turns that off: a plain bucket holding that many seconds "
        "of the limit (60: a minute's allowance at once, which strict providers refuse). "
        "0 is refused.")
    group: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="Keys whose limits carry the same group name share one set of limits, "
        "as a provider counts them (Gemini per project, Groq and OpenAI per organization). "
        "None: each key has its own.")
    expected_output_tokens: _Int | None = Field(
        default=None, gt=0,
        description="Output tokens reserved before a call that gives no max_tokens, >= 1 "
        "(corrected with the real usage afterwards). None: reserve max_tokens, else a "
        "default. 0 is refused.")
    send_allowance: float | None = Field(
        default=None, ge=0, le=5,
        description="Accepted for files written for llmkit 0.1 and ignored (with a warning): "
        "pacing leaves the room a request needs on its way to the provider.")

    @model_validator(mode="after")
    def _warn_ignored(self) -> RateLimit:
        if self.send_allowance is not None:
            import warnings

            warnings.warn(
                "RateLimit.send_allowance has no effect any more (sends are paced); remove it.",
                DeprecationWarning, stacklevel=2,
            )  # fmt: skip
        return self

    @property
    def is_unlimited(self) -> bool:
        """True when no limit of any kind is set."""
        return all(
            value is None
            for value in (self.requests_per_minute, self.input_tokens_per_minute,
                          self.output_tokens_per_minute, self.tokens_per_minute,
                          self.max_concurrent)
        )


RateLimitConfig = RateLimit


class RetryPolicy(ConfigModel, init=False):
    """When and how long to wait before trying a failed call again.

    The n-th retry waits about ``min(max_delay, base_delay * multiplier ** (n-1))``.
    """

    max_retries: _Int = Field(
        default=3, ge=0,
        description="Retries after the first attempt for 5xx, network errors and timeouts, >= 0. "
        "0: never retry. A 429 spends none (it is a wait: the call waits for a key until its "
        "deadline); nor does moving off a key that was refused (401, 403, out of credit).")
    base_delay: _Float = Field(
        default=1.0, ge=0, validation_alias=AliasChoices("base_delay", "retry_delay"),
        description="Seconds before the first retry, >= 0 (also accepted as retry_delay). "
        "0: retry without a backoff wait.")
    max_delay: _Float = Field(
        default=60.0, ge=0, description="Longest single backoff wait in seconds, >= base_delay.")
    multiplier: _Float = Field(
        default=2.0, ge=1, description="Growth of the wait per retry, >= 1. 1: a constant wait.")
    max_time: _Float | None = Field(
        default=None, gt=0,
        description="Seconds allowed for a whole call, its attempts and every wait (for a key, "
        "after a 429, between retries) together, > 0 (0 is refused); no wait passes it. "
        "None: no overall limit (waits for a key still end at acquire_timeout).")
    jitter: bool = Field(
        default=True, description="Randomize waits so that threads do not retry in step. "
        "Jitter only ever adds to a server's Retry-After. False: exact waits.")
    retry_malformed: bool = Field(
        default=False,
        description="Retry a 2xx reply that cannot be read (no choices, broken JSON). The "
        "provider has billed it, so False (the default) raises MalformedResponseError at once.")
    retry_statuses: frozenset[Annotated[int, Field(ge=100, le=599)]] = Field(
        default=frozenset({408, 409, 429, 500, 502, 503, 504, 529}),
        description="HTTP statuses worth retrying (100-599). Empty: no status is retried.")

    @model_validator(mode="after")
    def _delays_in_order(self) -> RetryPolicy:
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) is below base_delay ({self.base_delay}); "
                "raise max_delay or lower base_delay")
        return self


_IGNORED_POOL_FIELDS = {
    "min_size": "every key is used, its client made on first use",
    "max_size": "per-key concurrency is RateLimit(max_concurrent=...)",
    "idle_timeout": "idle connections are closed by the HTTP pool itself",
    "max_lifetime": "idle connections are closed by the HTTP pool itself",
}
_warned_fields: set[str] = set()


def _warn_ignored(names: set[str]) -> None:
    """Say once per process, per field, that a PoolConfig field set by the caller does nothing."""
    import logging

    for name in sorted(names - _warned_fields):
        _warned_fields.add(name)
        logging.getLogger("llmkit.config").warning(
            "PoolConfig.%s is accepted for compatibility and has no effect in llmkit (%s)",
            name, _IGNORED_POOL_FIELDS[name],
        )  # fmt: skip


UNCAPPED_KEY_WORKERS = 64  # threads a key without RateLimit.max_concurrent counts for (see workers_for)
MIN_WORKERS, MAX_WORKERS = 4, 256  # the default executor's bounds (PoolConfig.workers_for)


class PoolConfig(ConfigModel, init=False):
    """The YAML ``pool:`` section: how keys are handed out.

    llmkit uses acquire_timeout, max_workers, failure_threshold and
    circuit_cooldown. min_size, max_size, idle_timeout and max_lifetime are
    accepted (and checked) for compatibility with existing files and ignored:
    llmkit makes one SDK client per key on first use and uses every key, and
    the SDKs' HTTP pools expire idle connections themselves.
    """

    min_size: _Int = Field(
        default=1, ge=0, description="Accepted for compatibility and ignored (clients are made "
        "per key on first use). >= 0.")
    max_size: _Int | None = Field(
        default=None, ge=1, description="Accepted for compatibility and ignored: every key is "
        "used; per-key concurrency is RateLimit.max_concurrent. >= 1, or None.")
    acquire_timeout: _Float | None = Field(
        default=30.0, ge=0,
        description="Seconds a call waits for a key that can admit it before "
        "PoolExhaustedError. 0: do not wait. None: wait forever.")
    idle_timeout: _Float | None = Field(
        default=3600.0, gt=0, description="Accepted for compatibility and ignored. > 0, or None.")
    max_lifetime: _Float | None = Field(
        default=7200.0, gt=0, description="Accepted for compatibility and ignored. > 0, or None.")
    max_workers: _Int | None = Field(
        default=None, ge=1,
        description="Threads running submit, map, batch and the async client's blocking work "
        "(a middleware without acall, response_model=), >= 1. None: what the keys' limits allow "
        "in flight: the sum of their RateLimit.max_concurrent (keys of one limit group count "
        "once), 64 for a key without one; at least 4, at most 256 (see workers_for). Threads "
        "are started only as work needs them.")
    failure_threshold: _Int = Field(
        default=5, ge=1,
        description="Consecutive failures that open a key's circuit (the key rests for "
        "circuit_cooldown), >= 1. 0 and None are refused.")
    circuit_cooldown: _Float = Field(
        default=30.0, ge=0,
        description="Seconds an open circuit waits before a probe request, >= 0. "
        "0: probe on the next call.")

    @model_validator(mode="after")
    def _sizes_in_order(self) -> PoolConfig:
        if self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) is above max_size ({self.max_size})")
        _warn_ignored(self.model_fields_set & set(_IGNORED_POOL_FIELDS))
        return self

    def workers_for(self, key_count: int, max_concurrent: Sequence[int | None] | None = None) -> int:
        """Executor threads: ``max_workers``, or what the keys allow in flight.

        ``max_concurrent`` lists each limit's ``RateLimit.max_concurrent`` (one entry per key,
        or per limit group when keys share one; None: no cap); without it, ``key_count``
        keys without a cap. A cap counts as itself, no cap as :data:`UNCAPPED_KEY_WORKERS`;
        the sum is kept within :data:`MIN_WORKERS` and :data:`MAX_WORKERS`. Threads start only
        as work needs them, so the bound costs nothing until a map or batch is that wide; it is
        what lets ``map`` reach what a key takes without the user sizing a pool (1 key, 100 ms
        replies: 4 threads gave 40 calls/s, 64 give what the raw async SDK does). A key's
        ``max_concurrent`` (or ``max_workers``) bounds it where the provider takes less.
        """
        if self.max_workers is not None:
            return self.max_workers
        caps: Sequence[int | None] = [None] * key_count if max_concurrent is None else max_concurrent
        total = sum(UNCAPPED_KEY_WORKERS if cap is None else cap for cap in caps)
        return min(MAX_WORKERS, max(MIN_WORKERS, total))
