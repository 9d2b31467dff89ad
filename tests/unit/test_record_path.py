"""The record path on arbitrary and hostile input, without services: deciding a record never raises,
its dead letter always fits the dead-letter producer, and a record's cost is bounded by its shape."""

import json
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, dead_letter_headers, dead_letter_key
from app.ingest.records import Rejection, check_headers, decode_order
from app.validation import validate_order
from tests.helpers import contract_example

DETAIL_LIMIT = 4096  # "a few KiB": what a header may cost, whatever the record held
# What a dead letter may add to its record besides the detail: names and small numbers.
HEADER_ALLOWANCE = 1024


def as_record(key: bytes | None, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(topic="orders", partition=3, offset=2**40, key=key, value=value, headers=[])


def dead_letter_size(record, rejection: Rejection) -> int:
    headers = dead_letter_headers(record, rejection)
    key = dead_letter_key(record)
    return len(key or b"") + len(record.value or b"") + sum(len(k) + len(v) for k, v in headers)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=50,
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.binary(max_size=64 * 1024), json_like.map(lambda v: json.dumps(v).encode())),
       key=st.none() | st.binary(max_size=64))
def test_any_bytes_are_decided_and_their_dead_letter_fits(value, key):
    decided = decode_order(value)
    if isinstance(decided, Rejection):
        record = as_record(key, value)
        headers = dict(dead_letter_headers(record, decided))
        assert len(headers["dlq.error.detail"]) <= DETAIL_LIMIT
        json.loads(headers["dlq.error.detail"])
        assert dead_letter_size(record, decided) <= MAX_DEAD_LETTER_BYTES


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.integers(), max_size=20))
def test_unknown_keys_of_any_text_give_a_detail_that_is_utf8_json(document):
    rejection = decode_order(json.dumps({**contract_example(), **{"x" + k: v for k, v in document.items()}})
                             .encode())
    if isinstance(rejection, Rejection):
        detail = dict(dead_letter_headers(as_record(b"k", b"v"), rejection))["dlq.error.detail"]
        json.loads(detail.decode("utf-8"))


def test_a_lone_surrogate_in_a_key_is_reported_not_raised():
    rejection = decode_order(b'{"\\ud800":0}')
    detail = json.loads(dict(dead_letter_headers(as_record(None, b"{}"), rejection))["dlq.error.detail"])
    assert "\ud800" in detail["errors"]


def test_a_record_with_neither_key_nor_value_gets_a_dead_letter_kafka_python_can_send():
    record = as_record(None, None)
    rejection = decode_order(record.value)
    assert rejection.error_type == "invalid_json"
    assert dead_letter_key(record) == b""


def test_a_detail_quoting_a_megabyte_is_cut_and_says_so():
    rejection = decode_order(b'{"' + b"a" * 1_048_400 + b'":0}')
    detail = json.loads(dict(dead_letter_headers(as_record(b"k", b"v"), rejection))["dlq.error.detail"])
    assert len(json.dumps(detail)) <= DETAIL_LIMIT
    assert any("a" * 32 in path for path in detail["errors"])


def test_header_keys_that_are_utf8_pass():
    assert check_headers([("traceparent", b"00-...")]) is None


def test_hostile_shapes_are_rejected_with_a_short_answer():
    example = contract_example()
    wrong_item = {name: "x" if isinstance(value, int) else 1 for name, value in example["items"][0].items()}
    hostile = {
        "3,000 empty items": {**example, "items": [{}] * 3000},
        "800 empty items": {**example, "items": [{}] * 800},
        "2,000 unknown keys": {**example, **{f"k{i}": 0 for i in range(2000)}},
        "1,000 items with every field wrong": {**example, "items": [wrong_item] * 1000},
        "100,000 unknown keys in every item": {**example, "items": [{str(i): 0 for i in range(100)}] * 1000},
    }
    for name, document in hostile.items():
        errors = validate_order(document)
        assert errors, name
        assert len(json.dumps(errors)) <= DETAIL_LIMIT, name


def test_every_invalid_item_up_to_a_few_is_named():
    example = contract_example()
    items = [dict(example["items"][0]) for _ in range(5)]
    for item in items[1::2]:
        item["price"] = -1
    assert set(validate_order({**example, "items": items})) == {"items.1.price", "items.3.price"}


def test_the_header_key_parser_is_the_one_copied_for_the_pinned_client():
    """app/ingest/kafka_records.py replaces one method of kafka-python-ng: a new version may have
    changed it, so the copy must be checked again before the pin moves."""
    from importlib.metadata import version

    from app.ingest.kafka_records import PATCHED_VERSION

    assert version("kafka-python-ng") == PATCHED_VERSION
