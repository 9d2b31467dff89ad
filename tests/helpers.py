"""What the tests need besides the harness: the contract's example, cursors of any content, the
orders a database holds, the service's /metrics read as numbers, and work done in a forked child."""

import base64
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.data.models import orders_table
from app.data.store import SaveOutcome, save_orders
from app.extensions import db
from harness import contract_example  # noqa: F401  (the tests' name for it)
from harness.oidc import log_in_at_provider, user_password

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



SESSION_COOKIE = "order_service_session"


def sign_in(client: FlaskClient, username: str = "developer", pii: bool = True, next_page: str = "/") -> None:
    """Sign `username` in to the page through the real provider's login form, as a browser would:
    the service's redirect, the provider's form, the service's callback (cookies stay in `client`)."""
    started = client.get("/auth/signin", query_string={"next": next_page, **({"pii": "1"} if pii else {})})
    assert started.status_code == 302, started.data
    back = urlsplit(log_in_at_provider(started.headers["Location"], username, user_password(username)))
    finished = client.get(back.path, query_string=back.query)
    assert finished.status_code == 302, finished.data


class PageSession:
    """A developer's page session, signed in once and copied into each test's client; signed in
    again before it expires (it lasts as long as the provider's access token, 5 minutes)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.cookie = ""
        self.signed_in_at = float("-inf")

    def copy_into(self, client: FlaskClient) -> None:
        if time.monotonic() - self.signed_in_at > 180:
            signing_in = self.app.test_client()
            sign_in(signing_in)
            self.cookie = signing_in.get_cookie(SESSION_COOKIE).value
            self.signed_in_at = time.monotonic()
        client.set_cookie(SESSION_COOKIE, self.cookie)


def consumer_states(service: "Service", polls: int = 6) -> set[str]:
    """The consumer states the instance's workers report in /readyz (each poll reaches one worker)."""
    states = set()
    for _ in range(polls):
        status, _, body = service.get("/readyz")
        if status:
            states.add(json.loads(body)["consumer"]["state"])
    return states


def in_child(work: Callable[[], object]) -> NoReturn:
    """Run `work` in a forked child and end the child, whatever happens: never a second pytest."""
    code = 1
    try:
        work()
        code = 0
    finally:
        os._exit(code)
