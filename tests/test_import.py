"""``import llmkit`` stays light: no provider SDK, no pydantic, until first use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["openai", "anthropic", "instructor", "pydantic", "pydantic_settings", "httpx", "requests", "yaml",
         "redis", "tqdm", "backoff"]  # fmt: skip


def loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_llmkit_loads_no_heavy_dependency():
    modules = loaded_after("import llmkit")
    assert not {m for m in HEAVY if m in modules}


def test_public_names_import_without_provider_sdks():
    modules = loaded_after("from llmkit import LLMClient, Message, MessageRole, Response, Usage, LLMConfig")
    assert "openai" not in modules and "anthropic" not in modules


def test_public_api_is_complete():
    import llmkit

    names = ("LLMClient", "Message", "MessageRole", "Response", "Usage", "LLMConfig", "RateLimit",
             "RateLimitConfig", "get_llm_manager", "LLMProvider", "LLMError", "RateLimitError")  # fmt: skip
    for name in names:
        assert getattr(llmkit, name) is not None
        assert name in llmkit.__all__


def test_thinking_and_server_tool_parts_come_from_the_package_root():
    import llmkit
    from llmkit import blocks, types

    for name in ("ThinkingPart", "ServerToolPart"):
        assert name in llmkit.__all__
        assert getattr(llmkit, name) is getattr(types, name) is getattr(blocks, name)


def test_the_block_parts_import_without_pydantic_or_an_sdk():
    modules = loaded_after("import llmkit\nfrom llmkit import ServerToolPart, TextPart, ThinkingPart")
    assert not {m for m in HEAVY if m in modules}
