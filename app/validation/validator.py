"""Cerberus validation of one decoded order, plus the RFC 3339 parsing that storage shares."""

import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cerberus import Validator

from app.validation.schema import ITEM_SCHEMA, NESTED_GROUPS, ORDER_SCHEMA, TOP_LEVEL_FIELDS
from app.validation.shape import check_shape

# NUL can't live in PostgreSQL text, and a lone surrogate (legal in JSON's \ud800) can't be UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)
_MAX_DATE_LENGTH = 64


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset into an aware UTC datetime.

    Fractions beyond microseconds are truncated (PostgreSQL keeps microseconds). Raises ValueError
    for anything that is not a real instant, including one that leaves datetime's range in UTC.
    """
    match = _RFC3339.match(value) if len(value) <= _MAX_DATE_LENGTH else None
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, like 2021-11-26T06:22:19Z")
    date, time, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}{fraction}{offset}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"is not a valid date-time: {exc}") from None


class OrderValidator(Validator):
    # Cerberus runs `nullable` on every field, and scans four priority rules for each one, even
    # where the schema uses none of them. Our own rules already refuse None ("must be a string"),
    # and `type` (used on the dict and list fields) still goes first so that a wrong type stops
    # the field's other checks. Validation is about a quarter faster without them (bench/README.md).
    mandatory_validations = ()
    priority_validations = ("type",)
    # Rules whose handlers need nothing of Cerberus' per-field queue (no `type` to go first, none
    # drops the field's remaining rules): a field made only of them is checked by calling them in
    # the schema's order, which is what the queue amounts to for such a field.
    DIRECT_RULES = frozenset({"text", "int64", "rfc3339", "regex"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # field -> (the definitions the plan was made from, the plan or None)
        self._plans: dict[str, tuple[Any, list[tuple[Any, Any]] | None]] = {}

    def _BareValidator__validate_definitions(self, definitions: Any, field: str) -> None:
        """Cerberus' per-field step. For every field it rebuilds the field's queue of rules (three
        passes over priority, mandatory and normalisation rules), resolves the rules set and finds
        each rule's handler by name: most of its time, and the same answer for every document. The
        answer is kept per field; a field with any other rule goes through Cerberus' own step.
        tests/unit/test_validation.py compares the two on every kind of invalid record."""
        known = self._plans.get(field)
        if known is None or known[0] is not definitions:  # another schema passed to validate()
            known = self._plans[field] = (definitions, self._plan(definitions))
        plan = known[1]
        if plan is None:
            return super()._BareValidator__validate_definitions(definitions, field)
        value = self.document[field]
        for handler, constraint in plan:
            handler(constraint, field, value)
        return None

    def _plan(self, definitions: Any) -> list[tuple[Any, Any]] | None:
        if not isinstance(definitions, Mapping) or not set(definitions) <= self.DIRECT_RULES:
            return None
        return [(getattr(self, f"_validate_{rule}"), constraint) for rule, constraint in definitions.items()]

    def _validate_text(self, bounds: tuple[int, int], field: str, value: Any) -> None:
        """{'type': 'list'}"""
        if not isinstance(value, str):
            self._error(field, "must be a string")
            return
        min_length, max_length = bounds
        if len(value) < min_length:
            self._error(field, f"must be at least {min_length} characters long")
        elif len(value) > max_length:
            self._error(field, f"must be at most {max_length} characters long")
        elif _UNSTORABLE.search(value):
            self._error(field, "must not contain NUL characters or unpaired surrogates")

    def _validate_int64(self, maximum: int, field: str, value: Any) -> None:
        """{'type': 'integer'}"""
        # bool is a subclass of int in Python, but `true` is not a JSON integer.
        if not isinstance(value, int) or isinstance(value, bool):
            self._error(field, "must be an integer")
        elif not 0 <= value <= maximum:
            self._error(field, f"must be between 0 and {maximum}")

    def _validate_rfc3339(self, constraint: bool, field: str, value: Any) -> None:
        """{'type': 'boolean'}"""
        if not constraint:
            return
        if not isinstance(value, str):
            self._error(field, "must be a string")
            return
        try:
            parse_rfc3339(value)
        except ValueError as exc:
            self._error(field, str(exc))


_local = threading.local()

# The order's rules with its sub-documents' fields named by path ("delivery.name"), and without the
# items, which are validated one by one (below). Once the shape is checked, one flat Cerberus run does
# the work of three nested ones, with no child validators to build.
_FLAT_ORDER_SCHEMA = {
    **{name: ORDER_SCHEMA[name] for name in TOP_LEVEL_FIELDS},
    **{f"{group}.{field}": rule for group, schema in NESTED_GROUPS.items() for field, rule in schema.items()},
}
# Enough items to show a producer the pattern of its mistake.
MAX_REPORTED_ITEMS = 5


def _flat_document(document: dict[str, Any]) -> dict[str, Any]:
    flat = {name: value for name, value in document.items() if name != "items" and name not in NESTED_GROUPS}
    for name in NESTED_GROUPS:
        flat.update({f"{name}.{field}": value for field, value in document[name].items()})
    return flat


def _validators() -> tuple[OrderValidator, OrderValidator]:
    # Cerberus validators keep per-run state, so each thread builds its own, once.
    validators = getattr(_local, "validators", None)
    if validators is None:
        validators = tuple(
            OrderValidator(schema, allow_unknown=False) for schema in (_FLAT_ORDER_SCHEMA, ITEM_SCHEMA)
        )
        _local.validators = validators
    return validators


def validate_order(document: Any) -> dict[str, list[str]]:
    """Check a decoded JSON value against the contract.

    Returns {} for a valid order, else a map from field path ("items.0.price") to messages. The
    shape is checked first, so the cost is bounded by the contract's fields, whatever the record.
    """
    if not isinstance(document, dict):
        return {"": [f"must be a JSON object, not {type(document).__name__}"]}
    errors = check_shape(document)
    if errors:
        return errors
    order_validator, item_validator = _validators()
    # update=True: Cerberus skips its required-fields pass, which check_shape has done.
    if not order_validator.validate(_flat_document(document), update=True, normalize=False):
        errors = flatten_errors(order_validator.errors)
    errors.update(_item_errors(item_validator, document["items"]))
    return errors


def _item_errors(validator: OrderValidator, items: list[dict]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    invalid = 0
    for index, item in enumerate(items):
        if validator.validate(item, update=True, normalize=False):
            continue
        errors.update(flatten_errors(validator.errors, prefix=f"items.{index}."))
        invalid += 1
        if invalid == MAX_REPORTED_ITEMS:
            if index + 1 < len(items):
                errors["items"] = [f"checking stopped after {MAX_REPORTED_ITEMS} invalid items"]
            break
    return errors


def flatten_errors(tree: dict, prefix: str = "") -> dict[str, list[str]]:
    """Turn Cerberus' nested error tree into {"a.b.0.c": [messages]}."""
    flat: dict[str, list[str]] = {}
    for key, entries in tree.items():
        path = f"{prefix}{key}"
        for entry in entries:
            if isinstance(entry, dict):
                flat.update(flatten_errors(entry, prefix=f"{path}."))
            else:
                flat.setdefault(path, []).append(entry)
    return flat
