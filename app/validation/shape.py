"""Cheap structural checks that run before Cerberus.

Cerberus sorts its error list on every error it adds, so its time grows with the square of the
number of errors: a small record made of many empty items or unknown keys could hold a consumer
for minutes. These checks walk only the keys and the item list (never the values) and reject a
document whose shape is not the contract's, so Cerberus only ever sees documents with the
contract's keys, each able to produce at most one error per field.
"""

from typing import Any

from app.validation.schema import ITEM_SCHEMA, MAX_ITEMS, NESTED_GROUPS, ORDER_SCHEMA

# Enough to tell a producer what is wrong; the rest is summarised in one line.
MAX_REPORTED_ERRORS = 20
# Field names come from the record: a 1 MiB key must not come back as a 1 MiB error.
MAX_REPORTED_NAME = 64


ORDER_KEYS = frozenset(ORDER_SCHEMA)
NESTED_KEYS = {name: frozenset(schema) for name, schema in NESTED_GROUPS.items()}
ITEM_KEYS = frozenset(ITEM_SCHEMA)


class _Errors:
    """Collects {path: [messages]} for up to MAX_REPORTED_ERRORS paths; past that, only notes
    that there were more."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {}
        self.stopped = False

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_REPORTED_ERRORS

    def add(self, path: str, message: str) -> None:
        if self.full and path not in self.found:
            self.stopped = True
        else:
            self.found.setdefault(path, []).append(message)

    def result(self) -> dict[str, list[str]]:
        if self.stopped:
            self.found.setdefault("", []).append(f"checking stopped after {MAX_REPORTED_ERRORS} errors")
        return self.found


def printable_name(name: str) -> str:
    return name if len(name) <= MAX_REPORTED_NAME else name[:MAX_REPORTED_NAME] + "…"


def _check_keys(document: dict, expected: frozenset[str], prefix: str, errors: _Errors) -> None:
    if document.keys() == expected:
        return
    for name in expected - document.keys():
        errors.add(prefix + name, "required field")
    for name in document.keys() - expected:
        errors.add(prefix + printable_name(name), "unknown field")


def _check_items(items: Any, errors: _Errors) -> None:
    if not isinstance(items, list):
        errors.add("items", "must be a list")
        return
    if not 1 <= len(items) <= MAX_ITEMS:
        errors.add("items", f"must have between 1 and {MAX_ITEMS} items, not {len(items)}")
        return
    for index, item in enumerate(items):
        if errors.full:
            errors.stopped = True
            return
        if not isinstance(item, dict):
            errors.add(f"items.{index}", "must be an object")
        else:
            _check_keys(item, ITEM_KEYS, f"items.{index}.", errors)


def check_shape(document: dict[str, Any]) -> dict[str, list[str]]:
    """The shape errors of a decoded order: {} when its keys are the contract's, its sub-documents
    objects and its items a list of 1..MAX_ITEMS objects. Each key and each item is looked at once,
    whatever the values hold."""
    errors = _Errors()
    _check_keys(document, ORDER_KEYS, "", errors)
    for name, keys in NESTED_KEYS.items():
        if name not in document:
            continue  # already "required field"
        value = document[name]
        if isinstance(value, dict):
            _check_keys(value, keys, f"{name}.", errors)
        else:
            errors.add(name, "must be an object")
    if "items" in document:
        _check_items(document["items"], errors)
    return errors.result()
