"""What the tests need besides the harness: the contract's example, cursors of any content, the
orders a database holds, and the service's /metrics read as numbers."""

import base64
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.data.models import orders_table
from app.data.store import SaveOutcome, save_orders
from app.extensions import db
from harness import contract_example  # noqa: F401  (the tests' name for it)

if TYPE_CHECKING:
    from harness.service import Service


def cursor_of(raw: str) -> str:
    """A `before` cursor in the form encode_cursor writes (URL-safe base64 without padding),
    holding whatever text a test (or an attacker) chose."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def save(app: Flask, orders: list[dict]) -> list[SaveOutcome]:
    """save_orders in an app context of its own, as the consumer stores orders."""
    with app.app_context():
        return save_orders(orders)


def stored_uids(app: Flask) -> list[str]:
    """The order_uid of every order in `app`'s database."""
    with app.app_context():
        return list(db.session.scalars(select(orders_table.c.order_uid)))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (a counter's `_total` included) whose labels include
    `labels`, in a Prometheus text exposition; 0 when there are none."""
    return sum(sample.value for sample in _samples(text)
               if sample.name == name and labels.items() <= sample.labels.items())


def metric_series(text: str, name: str) -> dict[frozenset, float]:
    """Every sample called `name`, by its labels."""
    return {frozenset(sample.labels.items()): sample.value
            for sample in _samples(text) if sample.name == name}


def _samples(text: str) -> Iterable:
    for family in text_string_to_metric_families(text):
        yield from family.samples



def consumer_states(service: "Service", polls: int = 6) -> set[str]:
    """The consumer states the instance's workers report in /readyz (each poll reaches one worker)."""
    states = set()
    for _ in range(polls):
        status, _, body = service.get("/readyz")
        if status:
            states.add(json.loads(body)["consumer"]["state"])
    return states
