"""Provider adapters: translation between llmkit requests and each provider API."""
