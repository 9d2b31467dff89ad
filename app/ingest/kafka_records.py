"""Two repairs to kafka-python-ng's record parsing, applied when a consumer is created.

The client decodes header keys as strict UTF-8 inside `poll()`. A record whose header key is not
UTF-8 (the broker stores it as it came) then makes every poll of its partition raise
CorruptRecordException, before the consumer ever sees the record: the partition is stuck for good.
This parser is the library's own `DefaultRecordBatch._read_msg` with one change: a header key that
is not UTF-8 becomes an `UndecodableHeaderKey` (its text with U+FFFD for the bad bytes, and the
bytes themselves), so the record reaches the consumer, which dead-letters it
(`records.check_headers`). Pinned to the version it was copied from; a test checks the version.

The client also decompresses a whole compressed batch into memory before any check: a 2 MiB gzip
batch of zeros is 2 GiB uncompressed (zstd goes further), and the worker would be killed and would
fetch the same batch again, for good. Batches are decompressed here up to MAX_BATCH_BYTES; past it,
each of the batch's records comes out with no key and no value and an `OversizedBatchHeader`, so
the consumer dead-letters them (as `too_large`) and goes on.
"""

import gzip
import io

from kafka.codec import snappy_decode
from kafka.errors import CorruptRecordException
from kafka.record.default_records import DefaultRecord, DefaultRecordBatch
from kafka.record.util import decode_varint

PATCHED_VERSION = "2.2.3"
# Far above a real batch (records of at most 1 MiB each, batches of a few hundred orders), far
# below what a worker can hold.
MAX_BATCH_BYTES = 64 * 1024 * 1024
_OVERSIZED = "oversized"  # DefaultRecordBatch._decompressed for a batch refused here (it has __slots__)


class OversizedBatchHeader(str):
    """Marks a record whose compressed batch decompresses past MAX_BATCH_BYTES."""


def _uncompressed(batch: DefaultRecordBatch, data: bytes) -> bytes | None:
    """The batch's records, decompressed; None past MAX_BATCH_BYTES."""
    codec, limit = batch.compression_type, MAX_BATCH_BYTES
    if codec == batch.CODEC_GZIP:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(limit + 1)
    elif codec == batch.CODEC_LZ4:
        import lz4.frame

        out = lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=limit + 1)
    elif codec == batch.CODEC_ZSTD:
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as stream:
            out = stream.read(limit + 1)
    elif codec == batch.CODEC_SNAPPY:
        out = snappy_decode(data)  # snappy cannot expand more than ~21 times: a 2 MiB batch is safe
    else:
        raise CorruptRecordException(f"compression type {codec} is not supported")
    return None if len(out) > limit else out


def _maybe_uncompress(self: DefaultRecordBatch) -> None:
    if self._decompressed or self.compression_type == self.CODEC_NONE:
        return
    self._assert_has_codec(self.compression_type)
    uncompressed = _uncompressed(self, bytes(memoryview(self._buffer)[self._pos:]))
    if uncompressed is None:
        self._buffer, self._pos, self._decompressed = bytearray(), 0, _OVERSIZED
    else:
        self._buffer, self._pos, self._decompressed = bytearray(uncompressed), 0, True


def _oversized_record(self: DefaultRecordBatch) -> DefaultRecord:
    marker = OversizedBatchHeader("order-service.oversized")
    return DefaultRecord(self.base_offset + self._next_record_index, self.first_timestamp,
                         self.timestamp_type, None, None, [(marker, b"")])


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
    if self._decompressed == _OVERSIZED:
        return _oversized_record(self)
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
    """Install the parser and the bounded decompression above (idempotent)."""
    DefaultRecordBatch._read_msg = _read_msg
    DefaultRecordBatch._maybe_uncompress = _maybe_uncompress
