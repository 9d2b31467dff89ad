"""One dead letter as `flask dlq` sees it: its headers read without trusting them, its identity
(the source coordinates the contract names), and terminal-safe renderings of its bytes.

Anyone can write to the dead-letter topic, so nothing here assumes a header is present, UTF-8 or
sane: a bad header makes the dead letter "without source coordinates" or of an unknown type, and
every byte shown to a person goes through `escape`.
"""

import codecs
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from app.ingest.dead_letters import (
    HEADER_DROPPED,
    HEADER_ERROR_DETAIL,
    HEADER_ERROR_TYPE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)

# Kafka's own rule for topic names; anything else in dlq.source.topic is not a coordinate.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
# Offsets and partitions are at most int64: 19 digits.
_DECIMAL = re.compile(r"[0-9]{1,19}")
# Characters a terminal may act on or that hide what is there: controls, format characters (bidi
# overrides, zero-width), surrogates, private use, unassigned, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True, slots=True, order=True)
class Source:
    """Where a dead letter's record came from: its identity (a dead letter is delivered at least
    once, so the same Source can appear more than once in the dead-letter topic)."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        # Topic names cannot hold "/", so the form is unambiguous.
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq_partition: int
    dlq_offset: int
    timestamp_ms: int
    source: Source | None
    error_type_header: bytes | None
    detail: bytes | None
    key: bytes | None
    value: bytes | None
    # The dlq.dropped header: what the dead letter lacks of its record (too large to keep).
    dropped: bytes | None = None

    @classmethod
    def from_record(cls, record: Any) -> "DeadLetter":
        headers = _first_values(record.headers or ())
        return cls(
            dlq_partition=record.partition,
            dlq_offset=record.offset,
            timestamp_ms=record.timestamp,
            source=parse_source(headers.get(HEADER_SOURCE_TOPIC), headers.get(HEADER_SOURCE_PARTITION),
                                headers.get(HEADER_SOURCE_OFFSET)),
            error_type_header=headers.get(HEADER_ERROR_TYPE),
            detail=headers.get(HEADER_ERROR_DETAIL),
            key=record.key,
            value=record.value,
            dropped=headers.get(HEADER_DROPPED),
        )

    @property
    def error_type(self) -> str | None:
        """dlq.error.type, or None when the header is missing or not UTF-8."""
        return _utf8(self.error_type_header)

    @property
    def error_type_label(self) -> str:
        """The error type as shown and counted: escaped and cut, since the header is untrusted."""
        return "(missing)" if self.error_type_header is None else escape(self.error_type_header, 64)

    def content_digest(self) -> bytes:
        """Identifies the key and value bytes together (None is not b"")."""
        digest = hashlib.sha256()
        for part in (self.key, self.value):
            digest.update(b"N" if part is None else b"B%d:" % len(part) + part)
        return digest.digest()


def _first_values(headers: Any) -> dict[str, bytes | None]:
    values: dict[str, bytes | None] = {}
    for name, value in headers:
        values.setdefault(name, value)
    return values


def _utf8(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_source(topic: bytes | None, partition: bytes | None, offset: bytes | None) -> Source | None:
    """The source coordinates, or None unless all three headers are well formed."""
    texts = [_utf8(value) for value in (topic, partition, offset)]
    if (None in texts or not _TOPIC_NAME.fullmatch(texts[0]) or not _DECIMAL.fullmatch(texts[1])
            or not _DECIMAL.fullmatch(texts[2])):
        return None
    return Source(texts[0], int(texts[1]), int(texts[2]))


def escape(data: bytes | None, limit: int) -> str:
    """At most `limit` bytes of `data` as text a terminal shows as it is: invalid UTF-8 as \\xNN,
    unsafe characters as \\xNN / \\uNNNN / \\UNNNNNNNN, and a backslash as \\\\ (so an escape
    in the output always means an escape). "…" marks a cut; None is "(null)"."""
    if data is None:
        return "(null)"
    cut = len(data) > limit
    # Not final when cut: a multi-byte character the cut split is dropped, not shown as escapes.
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(data[:limit], final=not cut)
    return "".join(_escape_char(char) for char in text) + ("…" if cut else "")


def _escape_char(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
