"""The masked form of an order: what a caller without `orders:pii` sees, in JSON and on the page.

The personal fields (PERSONAL_FIELDS) keep their first character and their shape, the rest becomes
`*`: `Ш**** М****`, `+7*******43`, `s***@mail.ru`. Everything else is the order exactly as served,
in the same field order, so the masked bytes are one function of the served bytes. The contract
(docs/contract/README.md, "Personal fields") documents the same.
"""

import re
from collections.abc import Callable
from typing import Any

MASK = "*"
_WORD = re.compile(r"\S+")


def _words(value: str) -> str:
    """Each word keeps its first character: `Test Testov` -> `T*** T*****`."""
    return _WORD.sub(lambda word: word[0][0] + MASK * (len(word[0]) - 1), value)


def _initial(value: str) -> str:
    """Only the first character: `2639809` -> `2******`."""
    return value[:1] + MASK * (len(value) - 1)


def _phone(value: str) -> str:
    """The `+`, the first digit and the last two: `+79161234543` -> `+7********43`."""
    plus = "+" if value.startswith("+") else ""
    digits = value[len(plus):]
    if len(digits) <= 3:
        return plus + MASK * len(digits)
    return plus + digits[0] + MASK * (len(digits) - 3) + digits[-2:]


def _email(value: str) -> str:
    """The local part's first character, then `***`; the domain stays: `sam@mail.ru` -> `s***@mail.ru`."""
    local, at, domain = value.rpartition("@")
    if not at:
        return _initial(value)
    return local[:1] + MASK * 3 + at + domain


# (sub-document, field) -> how it is masked: the one list of an order's personal fields.
PERSONAL_FIELDS: dict[tuple[str, str], Callable[[str], str]] = {
    ("delivery", "name"): _words,
    ("delivery", "phone"): _phone,
    ("delivery", "email"): _email,
    ("delivery", "address"): _words,
    ("delivery", "zip"): _initial,
    ("payment", "transaction"): _initial,
    ("payment", "request_id"): _initial,
}


def mask_document(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the served document with its personal fields masked (the input is not changed)."""
    masked = dict(document)
    for group in {group for group, _ in PERSONAL_FIELDS}:
        masked[group] = dict(document[group])
    for (group, field), mask in PERSONAL_FIELDS.items():
        masked[group][field] = mask(document[group][field])
    return masked
