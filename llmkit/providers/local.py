"""Local model servers that speak OpenAI's chat completions: Ollama, vLLM, llama.cpp, LM Studio.

The provider is ``local`` (aliases ``ollama``, ``vllm``, ``llamacpp``,
``llama.cpp``, ``lmstudio``: the table is :data:`llmkit.config.settings.PROVIDER_ALIASES`).
No API key is needed (a placeholder is sent); rate limits are optional and
these servers send no rate-limit headers. The default base URL is Ollama's;
point ``base_url=`` at the others (vLLM ``http://localhost:8000/v1``,
llama.cpp ``http://localhost:8080/v1``, LM Studio ``http://localhost:1234/v1``).
Whether tools, images and JSON mode work depends on the server and the model.
"""

from __future__ import annotations

from llmkit.providers.base import Capabilities
from llmkit.providers.openai import OpenAIProvider

__all__ = ["LocalProvider"]


class LocalProvider(OpenAIProvider):
    """Any OpenAI-compatible server, by default Ollama on this machine."""

    name = "local"
    aliases = ("ollama", "vllm", "llamacpp", "llama.cpp", "lmstudio")
    key_env_vars = ()
    default_model = "llama3.2"
    requires_key = False
    default_base_url = "http://localhost:11434/v1"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
    )
    completion_tokens_models = None
    batch_api = None  # local servers have no batch API
