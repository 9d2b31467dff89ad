"""Order validation against the contract."""

from app.validation.schema import MAX_RECORD_BYTES, ORDER_SCHEMA
from app.validation.validator import parse_rfc3339, validate_order

__all__ = ["MAX_RECORD_BYTES", "ORDER_SCHEMA", "parse_rfc3339", "validate_order"]
