"""Reproducible order generators, in three families, all deterministic for a given seed or
``random.Random`` state (see docs/contract/README.md for the rules they follow):

* :class:`OrderFactory` (realistic.py) - realistic, contract-valid orders with consistent totals
  (seeding, load);
* :func:`edge_case_order` (edge_cases.py) - still valid, but at the contract's edges (storage
  round-trip tests);
* :func:`invalid_record` (invalid.py) - raw Kafka values the consumer must dead-letter, with the
  expected ``dlq.error.type``.

Limits, field lists and the encoding come from the schema and app.documents (common.py). No Kafka
and no Flask app here.
"""

from app.seed.common import INT_MAX, MAX_ITEMS, MAX_RECORD_BYTES, Order, encode
from app.seed.edge_cases import edge_case_order
from app.seed.invalid import INVALID_KINDS, INVALID_VARIANTS, invalid_record
from app.seed.realistic import OrderFactory

__all__ = [
    "INT_MAX",
    "INVALID_KINDS",
    "INVALID_VARIANTS",
    "MAX_ITEMS",
    "MAX_RECORD_BYTES",
    "Order",
    "OrderFactory",
    "edge_case_order",
    "encode",
    "invalid_record",
]
