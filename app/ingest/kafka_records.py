"""One repair to kafka-python-ng's record parsing, applied when a consumer is created.

The client decodes header keys as strict UTF-8 inside `poll()`. A record whose header key is not
UTF-8 (the broker stores it as it came) then makes every poll of its partition raise
CorruptRecordException, before the consumer ever sees the record: the partition is stuck for good.
This parser is the library's own `DefaultRecordBatch._read_msg` with one change: a header key that
is not UTF-8 becomes an `UndecodableHeaderKey` (its text with U+FFFD for the bad bytes, and the
bytes themselves), so the record reaches the consumer, which dead-letters it
(`records.check_headers`). Pinned to the version it was copied from; a test checks the version.
"""

from kafka.errors import CorruptRecordException
from kafka.record.default_records import DefaultRecord, DefaultRecordBatch
from kafka.record.util import decode_varint

PATCHED_VERSION = "2.2.3"


class UndecodableHeaderKey(str):
    """A header key that is not UTF-8: reads as its text with U+FFFD, keeps its bytes in `raw`."""

    raw: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> "UndecodableHeaderKey":
        key = cls(raw.decode("utf-8", "replace"))
        key.raw = raw
        return key


def _header_key(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableHeaderKey.from_bytes(raw)


def _read_msg(self: DefaultRecordBatch, decode_varint=decode_varint) -> DefaultRecord:
    buffer = self._buffer
    pos = self._pos
    length, pos = decode_varint(buffer, pos)
    start_pos = pos
    _, pos = decode_varint(buffer, pos)  # attributes are not used

    ts_delta, pos = decode_varint(buffer, pos)
    if self.timestamp_type == self.LOG_APPEND_TIME:
        timestamp = self.max_timestamp
    else:
        timestamp = self.first_timestamp + ts_delta

    offset_delta, pos = decode_varint(buffer, pos)
    offset = self.base_offset + offset_delta

    key, pos = _read_bytes(buffer, pos)
    value, pos = _read_bytes(buffer, pos)

    header_count, pos = decode_varint(buffer, pos)
    if header_count < 0:
        raise CorruptRecordException(f"Found invalid number of record headers {header_count}")
    headers = []
    for _ in range(header_count):
        h_key_len, pos = decode_varint(buffer, pos)
        if h_key_len < 0:
            raise CorruptRecordException(f"Invalid negative header key size {h_key_len}")
        h_key = _header_key(bytes(buffer[pos: pos + h_key_len]))
        pos += h_key_len
        h_value, pos = _read_bytes(buffer, pos)
        headers.append((h_key, h_value))

    if pos - start_pos != length:
        raise CorruptRecordException(
            f"Invalid record size: expected to read {length} bytes in record payload, "
            f"but instead read {pos - start_pos}")
    self._pos = pos
    return DefaultRecord(offset, timestamp, self.timestamp_type, key, value, headers)


def _read_bytes(buffer, pos: int) -> tuple[bytes | None, int]:
    """A varint length, then that many bytes; a negative length is null."""
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos: pos + length]), pos + length


def tolerate_non_utf8_header_keys() -> None:
    """Install the parser above (idempotent)."""
    DefaultRecordBatch._read_msg = _read_msg
