"""Drives the real services from outside: the test suite and the benchmarks both use it.

PostgreSQL databases (`postgres`), Kafka topics and records (`kafka`), the service under gunicorn
(`service`), the edge in front of it (`edge`) and polling with a deadline (`waiting`). The service
never imports it (an import-linter contract in pyproject.toml says so).
"""

from pathlib import Path

# The repository: gunicorn runs from here, and scripts/ and docs/ are found from it.
ROOT = Path(__file__).resolve().parent.parent
