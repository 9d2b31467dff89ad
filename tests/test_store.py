"""save_orders / get_order against the real PostgreSQL, called directly: each test asks for the
`app_context` fixture."""

import copy
import json
import random
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.cache import CachedOrder
from app.data.models import items_table, orders_table
from app.data.store import SaveOutcome, get_order, save_orders
from app.documents import served_form
from app.extensions import db
from app.seed import OrderFactory, edge_case_order
from app.validation import validate_order


def count_rows() -> tuple[int, int]:
    orders = db.session.scalar(select(func.count()).select_from(orders_table))
    items = db.session.scalar(select(func.count()).select_from(items_table))
    return orders, items


def test_the_contract_example_round_trips_unchanged(empty_db, app_context, example_order):
    assert save_orders([example_order]) == [SaveOutcome.STORED]
    # The example's date is already UTC with no fraction, so it is served back byte for byte.
    assert get_order(example_order["order_uid"]) == example_order


def test_an_unknown_order_is_none(empty_db, app_context):
    assert get_order("does-not-exist") is None


def test_a_thousand_edge_case_orders_round_trip(empty_db, app_context):
    rng = random.Random(20261125)
    orders = [edge_case_order(rng, index) for index in range(1000)]
    assert all(validate_order(order) == {} for order in orders)
    outcomes = []
    for start in range(0, len(orders), 250):
        outcomes += save_orders(orders[start : start + 250])
    assert outcomes == [SaveOutcome.STORED] * 1000
    for order in orders:
        assert get_order(order["order_uid"]) == served_form(order), order["order_uid"]


def test_dates_are_served_in_utc(empty_db, app_context, example_order):
    example_order["date_created"] = "2021-11-26T09:22:19.5+03:00"
    save_orders([example_order])
    assert get_order(example_order["order_uid"])["date_created"] == "2021-11-26T06:22:19.500000Z"


def test_a_redelivery_is_a_duplicate_and_writes_nothing(empty_db, app_context, example_order):
    save_orders([example_order])
    before = count_rows()
    assert save_orders([copy.deepcopy(example_order)]) == [SaveOutcome.DUPLICATE]
    assert count_rows() == before


def test_the_same_instant_in_another_offset_is_a_duplicate(empty_db, app_context, example_order):
    save_orders([example_order])
    again = copy.deepcopy(example_order)
    again["date_created"] = "2021-11-26T09:22:19+03:00"
    assert save_orders([again]) == [SaveOutcome.DUPLICATE]


def test_different_content_is_a_conflict_and_the_stored_order_stays(empty_db, app_context, example_order):
    save_orders([example_order])
    changed = copy.deepcopy(example_order)
    changed["payment"]["amount"] += 1
    assert save_orders([changed]) == [SaveOutcome.CONFLICT]
    assert get_order(example_order["order_uid"]) == example_order


def test_outcomes_follow_the_batch_order_with_repeats_inside_it(empty_db, app_context):
    first, second, third = OrderFactory(seed=3).orders(3)
    save_orders([first])
    changed_second = copy.deepcopy(second)
    changed_second["entry"] = "OTHER"
    batch = [second, first, third, copy.deepcopy(second), changed_second]
    assert save_orders(batch) == [
        SaveOutcome.STORED,
        SaveOutcome.DUPLICATE,
        SaveOutcome.STORED,
        SaveOutcome.DUPLICATE,
        SaveOutcome.CONFLICT,
    ]
    assert get_order(second["order_uid"]) == served_form(second)
    assert count_rows() == (3, sum(len(o["items"]) for o in (first, second, third)))


def test_two_threads_saving_the_same_new_orders_store_each_once(app, empty_db, app_context):
    orders = list(OrderFactory(seed=11).orders(200))
    barrier = threading.Barrier(2)
    results: dict[str, list[SaveOutcome]] = {}
    errors: list[BaseException] = []

    def worker(name: str, batch: list[dict]) -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                results[name] = save_orders(batch)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    # Reversed in one thread: the lock order inside save_orders must prevent a deadlock.
    threads = [
        threading.Thread(target=worker, args=("a", orders)),
        threading.Thread(target=worker, args=("b", list(reversed(orders)))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    by_uid_a = dict(zip((o["order_uid"] for o in orders), results["a"], strict=False))
    by_uid_b = dict(zip((o["order_uid"] for o in reversed(orders)), results["b"], strict=False))
    for uid in by_uid_a:
        assert {by_uid_a[uid], by_uid_b[uid]} == {SaveOutcome.STORED, SaveOutcome.DUPLICATE}
    assert count_rows() == (200, sum(len(o["items"]) for o in orders))
    for order in orders[:20]:
        assert get_order(order["order_uid"]) == served_form(order)


def test_a_failed_batch_writes_nothing(empty_db, app_context, example_order):
    good = next(OrderFactory(seed=5).orders(1))
    bad = copy.deepcopy(example_order)
    bad["items"][0]["sale"] = 101  # invalid: only the database's CHECK catches it here
    with pytest.raises(IntegrityError):
        save_orders([good, bad])
    assert count_rows() == (0, 0)


def test_key_order_does_not_change_the_served_bytes_or_the_duplicate_check(
        empty_db, app_context, example_order):
    """A producer may write the fields in any order: the consumer's cache copy and a copy read
    back from PostgreSQL must be the same bytes (same ETag), and a reordered redelivery is a
    duplicate."""
    reordered = {key: example_order[key] for key in reversed(list(example_order))}
    payment = example_order["payment"]
    reordered["payment"] = {key: payment[key] for key in reversed(list(payment))}
    assert save_orders([reordered]) == [SaveOutcome.STORED]
    written_through = CachedOrder.from_document(served_form(reordered))
    read_through = CachedOrder.from_document(get_order(example_order["order_uid"]))
    assert written_through == read_through
    assert list(json.loads(read_through.body)) == list(example_order)
    assert save_orders([example_order]) == [SaveOutcome.DUPLICATE]


def test_text_with_the_characters_copy_escapes_round_trips(empty_db, app_context, example_order):
    """Orders reach PostgreSQL through COPY's text format, where a tab, a newline, a carriage return
    and a backslash mean something (as do \\N and \\. at the start of a line): inside a value they
    are data like any other."""
    order = copy.deepcopy(example_order)
    tricky = "a\tb\nc\rd\\e\\N\n\\.\n\\\\x00\\t 📦\u2028"
    order["delivery"]["address"] = tricky
    order["internal_signature"] = "\\."
    order["items"][0]["name"] = tricky
    order["items"][0]["brand"] = "\\N"
    assert validate_order(order) == {}
    assert save_orders([order]) == [SaveOutcome.STORED]
    assert get_order(order["order_uid"]) == served_form(order)
    assert save_orders([copy.deepcopy(order)]) == [SaveOutcome.DUPLICATE]
