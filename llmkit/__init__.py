"""llmkit: a dependable, synchronous-first client for large language models."""
