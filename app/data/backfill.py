"""Filling in orders.body for orders stored before the column existed (migration 0002).

Online and resumable: batches in id order, each in a short transaction of its own, touching only
rows whose body is still NULL (the consumer only inserts new rows, with their body). Each order's
bytes are assembled from its rows, exactly as readers were served them, and written only if they
hash to the content_hash the consumer stored at ingest; an order whose rows do not give back its
hash is left NULL (it is still served from its rows) and reported."""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from app.data.models import orders_table
from app.data.store import read_documents
from app.documents import encode_document
from app.extensions import db

_FILL = text(
    "UPDATE orders AS o SET body = v.body "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:bodies AS bytea[])) AS v(id, body) "
    "WHERE o.id = v.id AND o.body IS NULL"
)


@dataclass
class BackfillBatch:
    """One committed batch: how many bodies it filled in, the uids it left alone, and the last id
    it looked at (a later run may start after it)."""

    filled: int
    mismatched: list[str] = field(default_factory=list)
    last_id: int = 0


def orders_without_body() -> int:
    without = select(func.count()).select_from(orders_table).where(orders_table.c.body.is_(None))
    return db.session.scalar(without)


def backfill_bodies(batch_size: int = 1000, after_id: int = 0) -> Iterator[BackfillBatch]:
    """Fill in the missing bodies, `batch_size` orders a transaction, from id `after_id` on;
    yields after each batch is committed."""
    while True:
        pending = db.session.execute(
            select(orders_table.c.id, orders_table.c.order_uid, orders_table.c.content_hash)
            .where(orders_table.c.body.is_(None), orders_table.c.id > after_id)
            .order_by(orders_table.c.id).limit(batch_size)
        ).all()
        if not pending:
            db.session.rollback()
            return
        ids = [row.id for row in pending]
        documents = read_documents(select(orders_table).where(orders_table.c.id.in_(ids)))
        by_uid = {document["order_uid"]: document for document in documents}
        batch = BackfillBatch(0, last_id=pending[-1].id)
        checked, bodies = [], []
        for row in pending:
            body = encode_document(by_uid[row.order_uid])
            if hashlib.sha256(body).digest() == bytes(row.content_hash):
                checked.append(row.id)
                bodies.append(body)
            else:
                batch.mismatched.append(row.order_uid)
        if checked:
            batch.filled = db.session.execute(_FILL, {"ids": checked, "bodies": bodies}).rowcount
        db.session.commit()
        after_id = batch.last_id
        yield batch
