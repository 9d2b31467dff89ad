"""Benchmarks against the real services: `make bench` (python -m bench)."""
