"""The record path on arbitrary and hostile input, without services: deciding a record never raises,
its dead letter always fits the dead-letter producer whatever the record's sizes, and a record's
cost is bounded by its shape."""

import ast
import hashlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ingest.dead_letters import MAX_DEAD_LETTER_BYTES, dead_letter, dead_letter_key
from app.ingest.kafka_records import LIBRARY_FUNCTIONS
from app.ingest.records import Rejection, check_headers, decode_order
from app.validation import validate_order
from tests.helpers import contract_example

DETAIL_LIMIT = 4096  # "a few KiB": what a header may cost, whatever the record held
MIB = 1024 * 1024


def as_record(key: bytes | None, value: bytes | None, headers: list | None = None) -> SimpleNamespace:
    return SimpleNamespace(topic="orders", partition=3, offset=2**40, key=key, value=value,
                           headers=headers or [])


def detail_of(record, rejection: Rejection) -> dict:
    return json.loads(dict(dead_letter(record, rejection).headers)["dlq.error.detail"])


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=50,
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.binary(max_size=64 * 1024), json_like.map(lambda v: json.dumps(v).encode())),
       key=st.none() | st.binary(max_size=64))
def test_any_bytes_are_decided_with_a_short_json_detail(value, key):
    decided = decode_order(value)
    if isinstance(decided, Rejection):
        headers = dict(dead_letter(as_record(key, value), decided).headers)
        assert len(headers["dlq.error.detail"]) <= DETAIL_LIMIT
        json.loads(headers["dlq.error.detail"])


# Sizes around every boundary a dead letter has: the source topic's 2 MiB, the dead letter's
# 3 MiB less its headers, and megabytes past them (a gzip batch carries those).
SIZES = [0, 1, 1024, 2 * MIB, MAX_DEAD_LETTER_BYTES - 6000, MAX_DEAD_LETTER_BYTES - 5000,
         MAX_DEAD_LETTER_BYTES - 1000, MAX_DEAD_LETTER_BYTES, 4 * MIB, 9 * MIB]


@settings(max_examples=300, deadline=None)
@given(key_size=st.sampled_from(SIZES) | st.integers(0, 9 * MIB), value_size=st.sampled_from(SIZES)
       | st.integers(0, 9 * MIB), traceparent_size=st.sampled_from([0, 55, 256, 257, 4 * MIB]),
       null_value=st.booleans())
def test_a_dead_letter_always_fits_and_keeps_what_it_can(key_size, value_size, traceparent_size, null_value):
    """Whatever a record's key, value and traceparent sizes, its dead letter fits the producer's
    max_request_size (counted as kafka-python counts it), keeps the value if it fits alone, then
    the key, unchanged, and names what it dropped."""
    key, value = b"k" * key_size, None if null_value else b"v" * value_size
    headers = [("traceparent", b"t" * traceparent_size)] if traceparent_size else []
    record = as_record(key, value, headers)
    letter = dead_letter(record, Rejection("invalid_json", {"message": "x" * 10_000}))
    assert letter.size() <= MAX_DEAD_LETTER_BYTES
    names = dict(letter.headers)
    dropped = names.get("dlq.dropped", b"").decode().split(",")
    assert letter.value == (None if "value" in dropped else value)
    assert letter.key == (b"" if "key" in dropped else key)
    if value is not None and value_size + 10_000 < MAX_DEAD_LETTER_BYTES:
        assert "value" not in dropped  # the value goes only when it cannot fit
    if "key" in dropped:
        assert key_size > 2 * MIB or "value" not in dropped
    assert ("traceparent" in names) == (0 < traceparent_size <= 256)
    # A long detail is cut (and says so), after these notes, which come first.
    detail = names["dlq.error.detail"].decode()
    json.loads(detail)
    assert all(f"{part}_dropped" in detail for part in dropped if part)
    assert len(names["dlq.error.detail"]) <= DETAIL_LIMIT


def test_a_dead_letter_the_broker_refuses_goes_again_without_key_and_value():
    """The fallback when the topic takes less than MAX_DEAD_LETTER_BYTES: headers only."""
    letter = dead_letter(as_record(b"k" * 1000, b"v" * 1000), Rejection("too_large", {}), limit=0)
    assert (letter.key, letter.value) == (b"", None)
    assert dict(letter.headers)["dlq.dropped"] == b"key,value"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), st.integers(), max_size=20))
def test_unknown_keys_of_any_text_give_a_detail_that_is_utf8_json(document):
    rejection = decode_order(json.dumps({**contract_example(), **{"x" + k: v for k, v in document.items()}})
                             .encode())
    if isinstance(rejection, Rejection):
        detail = dict(dead_letter(as_record(b"k", b"v"), rejection).headers)["dlq.error.detail"]
        json.loads(detail.decode("utf-8"))


def test_a_lone_surrogate_in_a_key_is_reported_not_raised():
    rejection = decode_order(b'{"\\ud800":0}')
    detail = detail_of(as_record(None, b"{}"), rejection)
    assert "\ud800" in detail["errors"]


def test_a_record_with_neither_key_nor_value_gets_a_dead_letter_kafka_python_can_send():
    record = as_record(None, None)
    rejection = decode_order(record.value)
    assert rejection.error_type == "invalid_json"
    assert dead_letter_key(record) == b""


def test_a_detail_quoting_a_megabyte_is_cut_and_says_so():
    rejection = decode_order(b'{"' + b"a" * 1_048_400 + b'":0}')
    detail = detail_of(as_record(b"k", b"v"), rejection)
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


def library_source(target: str) -> str:
    """The source of `module:Class.function` as the installed library has it on disk (what the
    service patched in at run time is not what this reads)."""
    module_name, qualname = target.split(":")
    text = Path(importlib.util.find_spec(module_name).origin).read_text()
    node = ast.parse(text)
    for name in qualname.split("."):
        node = next(child for child in ast.iter_child_nodes(node)
                    if isinstance(child, ast.ClassDef | ast.FunctionDef) and child.name == name)
    return ast.get_source_segment(text, node)


@pytest.mark.parametrize("target", sorted(LIBRARY_FUNCTIONS))
def test_the_library_functions_replaced_or_relied_on_are_the_ones_reviewed(target):
    """app/ingest/kafka_records.py and the consumer's stop replace or wrap functions of
    kafka-python-ng, or rely on how they work: a new version that changed any of them must be
    read again before the pin moves (then record its new SHA-256 in LIBRARY_FUNCTIONS)."""
    digest = hashlib.sha256(library_source(target).encode()).hexdigest()
    assert digest == LIBRARY_FUNCTIONS[target], f"{target} changed in the installed kafka-python-ng"
