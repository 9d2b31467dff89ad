"""Relational tables for orders, derived column by column from the contract's schema so that a
column always holds every value validation lets through.

`orders` keeps delivery and payment as prefixed columns (both are 1:1 with the order, so a join would
buy nothing); `order_items` has one row per item, keyed by (order_id, position) to keep item order.
"""

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    func,
)

from app.extensions import db
from app.validation.schema import ITEM_SCHEMA, NESTED_GROUPS, ORDER_SCHEMA, TOP_LEVEL_FIELDS


def _column_type(rules: dict[str, Any]) -> Any:
    if "text" in rules:
        return String(rules["text"][1])
    if "int64" in rules:
        return SmallInteger() if rules["int64"] <= 100 else BigInteger()
    if rules.get("rfc3339"):
        return DateTime(timezone=True)
    raise ValueError(f"no column type for rules {rules}")


def _columns(schema: dict[str, dict], prefix: str = "") -> list[Column]:
    return [Column(f"{prefix}{name}", _column_type(rules), nullable=False) for name, rules in schema.items()]


orders_table = Table(
    "orders",
    db.metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    *_columns({name: ORDER_SCHEMA[name] for name in TOP_LEVEL_FIELDS}),
    *(col for group, schema in NESTED_GROUPS.items() for col in _columns(schema, f"{group}_")),
    # SHA-256 of the canonical served form: tells a redelivery (same hash) from a conflict.
    Column("content_hash", LargeBinary(32), nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The served bytes themselves, so that a read is one indexed row (app/data/store.py, order_body);
    # NULL for orders stored before migration 0002 until `flask backfill-bodies` fills them in.
    Column("body", LargeBinary, nullable=True),
    UniqueConstraint("order_uid"),
)
Index("ix_orders_recent", orders_table.c.date_created.desc(), orders_table.c.id.desc())

items_table = Table(
    "order_items",
    db.metadata,
    Column(
        "order_id",
        BigInteger,
        ForeignKey("orders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", SmallInteger, primary_key=True),
    *_columns(ITEM_SCHEMA),
    CheckConstraint("sale BETWEEN 0 AND 100", name="sale_percent"),
)
