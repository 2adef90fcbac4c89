"""Backends that share state between processes and machines."""
