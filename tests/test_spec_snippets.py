"""Every code snippet of both spec documents runs, unchanged apart from the import path, both styles.

The snippets below are copied from ``shared/spec/*.md`` with only their import
lines changed (``src.llm``/``llm`` -> ``llmkit``; ``test_snippets_are_the_specs``
checks the copies against the documents). Each runs as written (the ``await``
style) and as its synchronous twin (``await``/``async`` removed,
``asyncio.run(f())`` -> ``f()``), against a FakeLLMServer that the settings
point at (``LLM_PROVIDERS__ANTHROPIC__BASE_URL``), in a namespace shared by the
snippets of one document as a reader's program would share it.
"""

# ruff: noqa: W293  (the spec's snippets keep their indented blank lines, as the documents have them)
from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmkit import reset_llm_manager
from llmkit.testing import FakeLLMServer, Fault, ToolCallReply

IMPORTS = [  # the spec's import path -> llmkit's
    ("from src.llm.core.exceptions import", "from llmkit.errors import"),
    ("from src.llm.testing import", "from llmkit.testing import"),
    ("from src.llm import", "from llmkit import"),
    ("from llm.middleware.rate_limiter import", "from llmkit import"),
    ("from llm import", "from llmkit import"),
]

# --- 000_697c97c6e493a874.md --------------------------------------------------------------

BASIC_000 = '''\
from llmkit import get_llm_manager, LLMProvider, Message, MessageRole

# Get manager instance
manager = await get_llm_manager()

# Get a client
client = manager.get_client(LLMProvider.ANTHROPIC)

# Make a completion request
messages = [
    Message(MessageRole.SYSTEM, "You are a helpful assistant"),
    Message(MessageRole.USER, "What is the capital of France?")
]

response = await client.complete(messages)
print(response.content)
'''

STRUCTURED_000 = '''\
from pydantic import BaseModel, Field
from typing import List

# Define your output schema
class CityInfo(BaseModel):
    name: str = Field(description="City name")
    country: str = Field(description="Country name")
    population: int = Field(description="Population count")
    landmarks: List[str] = Field(description="Famous landmarks")

# Request structured output
city_info = await client.complete(
    messages=[
        Message(MessageRole.USER, "Tell me about Paris")
    ],
    response_model=CityInfo  # Auto-detects and uses Instructor
)

print(f"City: {city_info.name}")
print(f"Population: {city_info.population:,}")
print(f"Landmarks: {', '.join(city_info.landmarks)}")
'''

POOLING_000 = '''\
# Configure multiple API keys for load balancing
import os

# Set multiple keys (comma-separated)
os.environ['ANTHROPIC_API_KEYS'] = 'key1,key2,key3'

# The pool automatically rotates between keys
manager = await get_llm_manager()
client = manager.get_client(LLMProvider.ANTHROPIC)

# Make many requests - automatically distributed
for i in range(100):
    response = await client.complete(messages)
'''

ERRORS_000 = '''\
from llmkit.errors import (
    LLMError,
    RateLimitError,
    InvalidRequestError
)

try:
    response = await client.complete(messages)
except RateLimitError as e:
    print(f"Rate limited: {e}. Retry after: {e.retry_after}")
except InvalidRequestError as e:
    print(f"Invalid request: {e}")
except LLMError as e:
    print(f"General LLM error: {e}")
'''

CONFIG_000 = '''\
from llmkit import LLMConfig

config = LLMConfig(
    temperature=0.7,
    max_tokens=2000,
    max_retries=3,
    retry_delay=1.0,
    timeout=30.0,
    system_prompt="You are a technical assistant"
)

response = await client.complete(
    messages,
    **config.to_dict()
)
'''

ANALYSIS_000 = '''\
from pydantic import BaseModel
from typing import List, Optional

class CodeFunction(BaseModel):
    name: str
    parameters: List[str]
    return_type: Optional[str]
    docstring: Optional[str]

class CodeAnalysis(BaseModel):
    language: str
    functions: List[CodeFunction]
    imports: List[str]
    complexity: int = Field(ge=1, le=10)

# Analyze code with structured output
analysis = await client.complete(
    messages=[
        Message(MessageRole.USER, f"Analyze this code:\\n{code_snippet}")
    ],
    response_model=CodeAnalysis
)

# Type-safe access to results
for func in analysis.functions:
    print(f"Function: {func.name}({', '.join(func.parameters)})")
'''

POOL_000 = '''\
# Default pool configuration
pool = ConnectionPool(
    api_keys=['key1', 'key2'],
    max_connections_per_key=5,  # Concurrent requests per key
    health_check_interval=60,    # Seconds between health checks
)
'''

MOCK_000 = '''\
# Test with mock client
from llmkit.testing import MockLLMClient

mock_client = MockLLMClient(
    responses=["Response 1", "Response 2"]
)

response = await mock_client.complete(messages)
assert response.content == "Response 1"
'''

# --- 004_845ccd15125b51e8.md --------------------------------------------------------------

YAML_004 = """\
global:
  default_provider: anthropic
  enable_logging: true
  log_level: INFO
  metrics_enabled: true

providers:
  anthropic:
    api_keys:
      - your-api-key-1
      - your-api-key-2  # Multiple keys for load balancing
    models:
      - claude-3-5-haiku-20241022
    rate_limits:
      - requests_per_minute: 12
        input_tokens_per_minute: 5000
        output_tokens_per_minute: 2000
    settings:
      temperature: 0.7
      max_tokens: 4096
      timeout: 30
      max_retries: 3

pool:
  min_size: 1
  max_size: 4  # Should match number of API keys
  acquire_timeout: 30.0
  idle_timeout: 3600.0
  max_lifetime: 7200.0
"""

BASIC_004 = '''\
from llmkit import get_llm_manager, LLMProvider, Message, MessageRole

async def main():
    # Get the LLM manager
    manager = await get_llm_manager()
    
    # Get a client for a specific provider
    client = manager.get_client(LLMProvider.ANTHROPIC)
    
    # Create a message
    messages = [
        Message(MessageRole.USER, "What is the capital of France?")
    ]
    
    # Get completion
    response = await client.complete(messages)
    print(response.content)
    
    # Clean up
    await manager.close()

# Run
import asyncio
asyncio.run(main())
'''

STREAM_004 = '''\
async def stream_example():
    manager = await get_llm_manager()
    client = manager.get_client(LLMProvider.ANTHROPIC)
    
    messages = [Message(MessageRole.USER, "Write a short story")]
    
    # Stream the response
    async for chunk in client.stream_complete(messages):
        print(chunk, end='', flush=True)
    
    await manager.close()
'''

SESSION_004 = '''\
from llmkit import SessionManager

async def conversation_example():
    manager = await get_llm_manager()
    client = manager.get_client(LLMProvider.ANTHROPIC)
    
    # Create a session for conversation history
    session = SessionManager()
    
    # First message
    await session.add_message(MessageRole.USER, "My name is Alice")
    response = await client.complete(session.get_messages())
    await session.add_message(MessageRole.ASSISTANT, response.content)
    
    # Follow-up (context is maintained)
    await session.add_message(MessageRole.USER, "What's my name?")
    response = await client.complete(session.get_messages())
    print(response.content)  # Will remember "Alice"
    
    await manager.close()
'''

RATE_004 = '''\
from llmkit import RateLimitConfig

async def custom_rate_limit():
    manager = await get_llm_manager()
    
    # Create custom rate limit config
    rate_config = RateLimitConfig(
        requests_per_minute=20,
        input_tokens_per_minute=10000,
        output_tokens_per_minute=5000,
        max_concurrent_requests=5
    )
    
    # Apply to specific provider
    client = await manager.get_or_create_client(
        LLMProvider.ANTHROPIC,
        rate_limit_config=rate_config
    )
    
    # Use client as normal
    messages = [Message(MessageRole.USER, "Hello")]
    response = await client.complete(messages)
'''

STATUS_004 = '''\
async def monitor_pool_status():
    manager = await get_llm_manager()
    
    # Get pool status
    status = manager.get_status(LLMProvider.ANTHROPIC)
    print(f"Total clients: {status['total_clients']}")
    print(f"Available: {status['available_clients']}")
    print(f"In use: {status['in_use_clients']}")
    
    # Get rate limit status for each client
    for client_status in status['client_statuses']:
        print(f"Client {client_status['client_id']}:")
        print(f"  Available: {client_status['is_available']}")
        print(f"  Error count: {client_status['error_count']}")
'''

DEBUG_004 = '''\
import logging

# Enable debug logging
logging.basicConfig(level=logging.DEBUG)
logging.getLogger("llm").setLevel(logging.DEBUG)
logging.getLogger("llm.middleware").setLevel(logging.DEBUG)
'''

SNIPPETS = {
    "000_697c97c6e493a874.md": [BASIC_000, STRUCTURED_000, POOLING_000, ERRORS_000, CONFIG_000,
                                ANALYSIS_000, POOL_000, MOCK_000],
    "004_845ccd15125b51e8.md": [YAML_004, BASIC_004, STREAM_004, SESSION_004, RATE_004, STATUS_004,
                                DEBUG_004],
}  # fmt: skip

CODE_SNIPPET = "import os\n\ndef read(path: str) -> str:\n    return open(path).read()\n"
ANALYSIS = {"language": "python", "imports": ["os"], "complexity": 2, "functions": [
    {"name": "read", "parameters": ["path"], "return_type": "str", "docstring": None}]}
PARIS = {"name": "Paris", "country": "France", "population": 2102650,
         "landmarks": ["Eiffel Tower", "Louvre"]}


def to_sync(code: str) -> str:
    """The snippet's synchronous twin: what the same program looks like without asyncio."""
    code = re.sub(r"asyncio\.run\((\w+)\(\)\)", r"\1()", code)
    return code.replace("async def ", "def ").replace("async for ", "for ").replace("await ", "")


def run(code: str, namespace: dict[str, Any]) -> None:
    """Run a snippet as a program would: top-level ``await`` is awaited (in a fresh event loop)."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # not this module's __future__ flags: the spec's code has none
    compiled = compile(code, "<spec snippet>", "exec", flags=flags, dont_inherit=True)
    result = eval(compiled, namespace)  # the spec's own code, copied above
    if inspect.iscoroutine(result):
        asyncio.run(result)


def call(namespace: dict[str, Any], name: str) -> None:
    function = namespace[name]
    result = function()
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.fixture
def spec_env(
    fake_server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeLLMServer]:
    """Settings as a spec user has them, pointed at the fake server; a fresh manager; no YAML file."""
    for name in ("OPENAI_API_KEY", "OPENAI_API_KEYS", "LLM_CONFIG_PATH", "LLM_DEFAULT_PROVIDER",
                 "LLM_LOG_LEVEL", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEYS", "sk-test-spec-key-1,sk-test-spec-key-2")
    monkeypatch.setenv("LLM_PROVIDERS__ANTHROPIC__BASE_URL", fake_server.anthropic_base_url)
    monkeypatch.chdir(tmp_path)
    reset_llm_manager()
    yield fake_server
    reset_llm_manager()


STYLES = {"await": lambda code: code, "sync": to_sync}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("style", STYLES)
def test_the_first_documents_snippets(
    spec_env: FakeLLMServer, style: str, capsys: pytest.CaptureFixture
) -> None:
    from llmkit import ConnectionPool

    twin = STYLES[style]
    ns: dict[str, Any] = {"code_snippet": CODE_SNIPPET, "ConnectionPool": ConnectionPool}
    run(twin(BASIC_000), ns)
    assert capsys.readouterr().out == "What is the capital of France?\n"

    spec_env.script(ToolCallReply("CityInfo", PARIS))
    run(twin(STRUCTURED_000), ns)
    assert capsys.readouterr().out == "City: Paris\nPopulation: 2,102,650\nLandmarks: Eiffel Tower, Louvre\n"

    reset_llm_manager()
    before = len(spec_env.requests)
    run(twin(POOLING_000), ns)
    keys = {r.key for r in spec_env.requests[before:]}
    assert len(spec_env.requests) - before == 100 and keys == {"key1", "key2", "key3"}

    spec_env.script(Fault(status=400))
    run(twin(ERRORS_000), ns)
    assert capsys.readouterr().out.startswith("Invalid request: ")

    run(twin(CONFIG_000), ns)
    sent = spec_env.requests[-1].body
    assert (sent["temperature"], sent["max_tokens"]) == (0.7, 2000)
    assert sent["system"].startswith("You are a technical assistant")  # then the messages' own

    spec_env.script(ToolCallReply("CodeAnalysis", ANALYSIS))
    run(twin(ANALYSIS_000), ns)
    assert capsys.readouterr().out == "Function: read(path)\n"

    run(twin(POOL_000), ns)
    with ns["pool"] as pool:
        assert [s["max_concurrent"] for s in pool.status()["client_statuses"]] == [5, 5]
        assert pool.complete("through the pool").content == "through the pool"

    run(twin(MOCK_000), ns)
    assert ns["response"].content == "Response 1"
    ns["manager"].close() if style == "sync" else asyncio.run(ns["manager"].close())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("style", STYLES)
def test_the_second_documents_snippets(
    spec_env: FakeLLMServer, style: str, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from llmkit.config import RateLimit, load_settings

    config = Path("config")
    config.mkdir()
    (config / "llm.yaml").write_text(YAML_004)  # the spec's default location
    monkeypatch.delenv("ANTHROPIC_API_KEYS")
    settings = load_settings()
    anthropic = settings.provider("anthropic")
    assert anthropic.key_values() == ["your-api-key-1", "your-api-key-2"]
    assert anthropic.rate_limit_for(1) == RateLimit(requests_per_minute=12, input_tokens_per_minute=5000,
                                                    output_tokens_per_minute=2000)  # fmt: skip
    assert settings.global_.log_level == "INFO" and settings.source.endswith("config/llm.yaml")

    twin = STYLES[style]
    ns: dict[str, Any] = {}
    run(twin(BASIC_004), ns)
    assert capsys.readouterr().out == "What is the capital of France?\n"

    reset_llm_manager()
    run(twin(STREAM_004), ns)
    call(ns, "stream_example")
    assert capsys.readouterr().out == "Write a short story"

    reset_llm_manager()
    run(twin(SESSION_004), ns)
    call(ns, "conversation_example")
    assert capsys.readouterr().out == "What's my name?\n"
    history = spec_env.requests[-1].body["messages"]
    assert [m["content"] for m in history][:2] == ["My name is Alice", "My name is Alice"]

    reset_llm_manager()
    run(twin(RATE_004), ns)
    call(ns, "custom_rate_limit")
    run(twin(STATUS_004), ns)
    call(ns, "monitor_pool_status")
    out = capsys.readouterr().out
    assert "Total clients: 2\nAvailable: 2\nIn use: 0\n" in out and out.count("  Error count: 0") == 2
    status = ns["get_llm_manager"]().get_status(ns["LLMProvider"].ANTHROPIC)
    keys = status["client_statuses"]
    assert [s["limits"]["requests"]["per_minute"] for s in keys] == [20, 20]
    assert sorted(s["requests"] for s in keys) == [0, 1]  # 20 a minute each, 1 sent

    run(twin(DEBUG_004), ns)
    seen = len(caplog.records)
    with caplog.at_level(logging.DEBUG, logger="llmkit"):
        run(twin(BASIC_004), ns)
    lines = [r.getMessage() for r in caplog.records[seen:] if r.name == "llmkit.middleware"]
    assert len(lines) == 1 and "claude-3-5-haiku-20241022 key=key-" in lines[0]


def _spec_dir() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "spec", here.parent.parent / "shared" / "spec"):
        if candidate.is_dir():
            return candidate
    return None


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:python|yaml)\n(.*?)```", text, flags=re.S)


def test_snippets_are_the_specs() -> None:
    spec = _spec_dir()
    if spec is None:
        pytest.skip("shared/spec is not beside this checkout")
    for name, snippets in SNIPPETS.items():
        blocks = _code_blocks((spec / name).read_text(encoding="utf-8"))
        for old, new in IMPORTS:
            blocks = [block.replace(old, new) for block in blocks]
        for snippet in snippets:
            assert snippet in blocks, f"{name}: this snippet is not the spec's:\n{snippet}"
