"""Drives the real services from outside: the test suite and the benchmarks both use it.

PostgreSQL databases (`postgres`), Kafka topics and records (`kafka`), the service under gunicorn
(`service`), the edge in front of it (`edge`) and polling with a deadline (`waiting`). The service
never imports it (an import-linter contract in pyproject.toml says so).
"""

import json
from pathlib import Path

# The repository: gunicorn runs from here, and docs/ is found from it.
ROOT = Path(__file__).resolve().parent.parent
# The order contract and its canonical example live in the repository.
CONTRACT_DIR = ROOT / "docs" / "contract"


def contract_example() -> dict:
    """A fresh copy of the contract's canonical example order."""
    return json.loads((CONTRACT_DIR / "order.example.json").read_text())
