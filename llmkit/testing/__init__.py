"""Tools for testing code that uses llmkit: a fake provider server and a mock client."""
