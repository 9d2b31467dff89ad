"""Repairs to how kafka-python-ng turns fetched bytes into records, installed when a consumer is
created (the service's consumer and `flask dlq`'s alike). Each replaced function is the library's
with the changes below; tests/unit/test_record_path.py checks that the library's own source is still
the one they were written against (LIBRARY_FUNCTIONS), so a new version of the client is looked at
before it is used.

1. Header keys that are not UTF-8. The client decodes header keys as strict UTF-8 inside `poll()`,
   so such a record made every poll of its partition raise, before the consumer saw it. Here it
   becomes an `UndecodableHeaderKey` (its text with U+FFFD, and its bytes), and the consumer
   dead-letters the record (`records.check_headers`).

2. Memory bounded per fetch. The client decompresses every batch of a fetch whole, inside
   `poll()`, before any check: the broker's size limits apply to compressed batches, 63 MiB of
   zeros is 2 KB of zstd, and one 1 MiB fetch of a partition can hold ~500 such batches. Here the
   records a consumer holds from its fetches (those handed out by the last poll, and those parsed
   but not handed out yet) cost at most MAX_FETCH_RECORD_BYTES, decompressed, counting each
   record's Python objects too; reading stops at the first record that does not fit, and the next
   fetch starts there. A batch decompresses into memory only up to BUFFERED_BATCH_BYTES; a larger
   one is read as a stream, record by record, and a key, value or headers larger than any record
   the topic accepts (MAX_SOURCE_RECORD_BYTES) are skipped, never held: that record comes out as
   an unread record (`too_large`), the others as they are.

3. Batches that cannot be read. A payload the codec refuses (a checksum, a truncated frame, bytes
   after the records that the broker never reads), or decompressed bytes that are not records,
   made `poll()` raise for good. Here the records before the break come out as they are, and each
   record from there on as an unread record (`invalid_record`).

An unread record has no key and no value, its real offset (read from the batch; past a break in a
compacted batch, whose offsets have gaps, the batch's last offsets), and one header whose key is an
`UnreadBatch` saying why.
"""

from collections.abc import Iterator
from typing import Any, Protocol

from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.errors import CorruptRecordException
from kafka.record.default_records import DefaultRecord, DefaultRecordBatch
from kafka.record.util import decode_varint

from app.ingest import codecs

PATCHED_VERSION = "2.2.3"
# Every function of the library that the service replaces, wraps or relies on the inner workings
# of (here, and in app/ingest/consumer.py's stop of coordinator waits), with the SHA-256 of its
# source in PATCHED_VERSION: a test fails when the installed library's differs.
LIBRARY_FUNCTIONS = {
    "kafka.record.default_records:DefaultRecordBatch._read_msg":
        "fac351e5832c74034a01dc1fed68bc999e8f419b2340449528bc37531a2f3ae4",
    "kafka.consumer.fetcher:Fetcher._unpack_message_set":
        "387b24b10261f481b999a57b304a345dde02e3085919f13b6e4d5dbdfed4df45",
    "kafka.consumer.fetcher:Fetcher.fetched_records":
        "2b5b2cbc7788e55ffacf504655273743bfb20271878715eecefc8a4af1006eeb",
    "kafka.consumer.fetcher:Fetcher._parse_fetched_data":
        "6d0c84df44d544fb6b67de3726e01c0d9519bb248c853253ef5e86b6c94eb661",
    "kafka.coordinator.base:BaseCoordinator.lookup_coordinator":
        "e0374ada510f63afb5233e00050414f40950439e41e39997d5906aaef23f8cb1",
    "kafka.client_async:KafkaClient.poll":
        "2b917553b8136251f320e8ef69f127c8bc6b36551dc0787ffadff626a5bee6d9",
}

# The largest record the source topic accepts (the broker's and the topic's max.message.bytes;
# app/ingest/dead_letters.py sizes dead letters from it). Only compression gets a key, a value or
# headers larger than this into a topic.
MAX_SOURCE_RECORD_BYTES = 2 * 1024 * 1024
# What the records a consumer holds from its fetches may cost, decompressed, each counted with
# RECORD_OVERHEAD_BYTES for its Python objects. Far above a real fetch (records of at most 1 MiB,
# batches of a few hundred orders), far below what a worker can hold.
MAX_FETCH_RECORD_BYTES = 64 * 1024 * 1024
RECORD_OVERHEAD_BYTES = 256
# A compressed batch up to this size, decompressed, is decompressed whole (the library's fast
# path); a larger one is read as a stream. Its buffer comes on top of the records held.
BUFFERED_BATCH_BYTES = 8 * 1024 * 1024
# Decompression one fetched_records() call may do before it hands out what it has: skipping a
# value of 63 MiB costs no memory, but it costs its time.
SCAN_BYTES_PER_FETCH = 1024 * 1024 * 1024
# No client sends more headers than this; a record with more is refused (`too_large`) without
# reading them one by one.
MAX_RECORD_HEADERS = 10_000


class UnreadBatch(str):
    """The header key that marks a record of a batch that could not be read (its payload broken):
    `detail` says where it broke."""

    detail: str

    @classmethod
    def of(cls, detail: str) -> "UnreadBatch":
        marker = cls("order-service.unread")
        marker.detail = detail
        return marker


class UndecodableHeaderKey(str):
    """A header key that is not UTF-8: reads as its text with U+FFFD, keeps its bytes in `raw`."""

    raw: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> "UndecodableHeaderKey":
        key = cls(raw.decode("utf-8", "replace"))
        key.raw = raw
        return key


class _Room:
    """What one fetched_records() call may still read: MAX_FETCH_RECORD_BYTES less what is held
    (records parsed earlier and not handed out yet), and SCAN_BYTES_PER_FETCH of decompression."""

    def __init__(self, held: int) -> None:
        self.left = MAX_FETCH_RECORD_BYTES - held
        self.scan_left = SCAN_BYTES_PER_FETCH

    @property
    def empty_handed(self) -> bool:
        """Nothing held and nothing read yet: a record that does not fit now never will."""
        return self.left == MAX_FETCH_RECORD_BYTES

    def admits(self, cost: int) -> bool:
        return self.empty_handed or (cost <= self.left and self.scan_left > 0)

    def take(self, cost: int) -> None:
        self.left -= cost


_library_fetched_records = Fetcher.fetched_records


def _fetched_records(self: Fetcher, max_records: int | None = None, update_offsets: bool = True):
    """The library's fetched_records, after measuring what is still held from earlier fetches."""
    part = self._next_partition_records
    if part is not None and not part:
        # Handed out entirely: its list still holds every record, which the consumer let go.
        self._next_partition_records = part = None
    self._order_service_room = _Room(_held_bytes(part))
    return _library_fetched_records(self, max_records, update_offsets)


def _held_bytes(part: Any) -> int:
    if part is None or part.messages is None:
        return 0
    return sum(_cost(record) for record in part.messages)


def _cost(record: Any) -> int:
    """What a record holds: its bytes, and its Python objects (~250 bytes, measured)."""
    key = len(record.key) if record.key is not None else 0
    value = len(record.value) if record.value is not None else 0
    headers = sum(len(name) + len(value or b"") for name, value in record.headers)
    return RECORD_OVERHEAD_BYTES + key + value + headers


def _unpack_message_set(self: Fetcher, tp: Any, records: Any) -> Iterator[ConsumerRecord]:
    """The library's _unpack_message_set, reading each batch within the fetch's room: it stops at
    the first record that does not fit (the next fetch starts there)."""
    room = getattr(self, "_order_service_room", None) or _Room(0)
    state = self._subscriptions.assignment[tp]
    try:
        batch = records.next_batch()
        while batch is not None:
            if not isinstance(batch, DefaultRecordBatch):
                # Magic 0 and 1, which Kafka 4 never serves: the library's own reading.
                yield from (_consumer_record(self, tp, record) for record in batch)
                batch = records.next_batch()
                continue
            reading = _BatchReading(batch, room, state.position)
            for record in reading:
                yield _consumer_record(self, tp, record)
            if not reading.complete:
                return
            state.last_offset_from_message_batch = batch.base_offset + batch.last_offset_delta
            batch = records.next_batch()
    # If unpacking raises StopIteration, it is erroneously caught by the generator (the library's
    # own note, issue 545): every exception must reach the caller.
    except StopIteration as exc:
        raise RuntimeError("StopIteration raised unpacking messageset") from exc


def _consumer_record(self: Fetcher, tp: Any, record: Any) -> ConsumerRecord:
    key_size = len(record.key) if record.key is not None else -1
    value_size = len(record.value) if record.value is not None else -1
    key = self._deserialize(self.config["key_deserializer"], tp.topic, record.key)
    value = self._deserialize(self.config["value_deserializer"], tp.topic, record.value)
    headers = record.headers
    header_size = sum(len(h_key.encode("utf-8")) + (len(h_val) if h_val is not None else 0)
                      for h_key, h_val in headers) if headers else -1
    return ConsumerRecord(tp.topic, tp.partition, record.offset, record.timestamp, record.timestamp_type,
                          key, value, headers, record.checksum, key_size, value_size, header_size)


class _BatchReading:
    """The records of one batch from `position` on, as far as the room goes (`complete` tells
    whether the batch was read to its end). A payload that decompresses to at most
    BUFFERED_BATCH_BYTES is decompressed whole and parsed by the library's code; a larger one, or
    one the codec refuses, is read as a stream, record by record."""

    def __init__(self, batch: DefaultRecordBatch, room: _Room, position: int | None) -> None:
        self.batch, self.room, self.position = batch, room, position or 0
        self.complete = False

    def __iter__(self) -> Iterator[DefaultRecord]:
        for record in self._records():
            if record.offset < self.position:
                continue
            cost = _cost(record)
            if not self.room.admits(cost):
                return
            self.room.take(cost)
            yield record
        self.complete = True

    def _records(self) -> Iterator[DefaultRecord]:
        batch = self.batch
        codec = batch.compression_type
        if codec != batch.CODEC_NONE:
            payload = bytes(memoryview(batch._buffer)[batch._pos:])
            try:
                data = codecs.decompress(codec, payload, BUFFERED_BATCH_BYTES)
            except codecs.CorruptBatch:
                data = None  # the stream reads it as far as it goes, and says where it broke
            self.room.scan_left -= len(data) if data is not None else BUFFERED_BATCH_BYTES
            if data is None:
                yield from _StreamedBatch(batch, payload, self.room, self.position)
                return
            batch._buffer, batch._pos, batch._decompressed = data, 0, True
        read: list[int] = []
        try:
            for record in batch:
                read.append(record.offset)
                yield record
        except CorruptRecordException as exc:
            codec_name = codecs.CODEC_NAMES.get(codec, "uncompressed")
            marker = UnreadBatch.of(f"the record's {codec_name} batch cannot be read: {exc}")
            yield from _unread(batch, marker, read)


def _count(batch: DefaultRecordBatch) -> int:
    return batch._header_data[12]


def _timestamp(batch: DefaultRecordBatch, delta: int) -> int:
    if batch.timestamp_type == batch.LOG_APPEND_TIME:
        return batch.max_timestamp
    return batch.first_timestamp + delta


def _unread(batch: DefaultRecordBatch, marker: UnreadBatch, read: list[int]) -> Iterator[DefaultRecord]:
    """An unread record for each record of the batch after those whose offsets are `read`. Their
    offsets follow from the header when the batch has no gaps (any topic that is not compacted);
    in a compacted batch, those past the point where it broke take the batch's last offsets."""
    first, last = batch.base_offset, batch.base_offset + batch.last_offset_delta
    missing = _count(batch) - len(read)
    if missing <= 0:
        return
    if _count(batch) == last - first + 1:
        offsets = range(first + len(read), last + 1)
    else:
        offsets = range(max(last - missing + 1, (read[-1] + 1) if read else first), last + 1)
    for offset in offsets:
        yield DefaultRecord(offset, _timestamp(batch, 0), batch.timestamp_type, None, None, [(marker, b"")])


class _StreamedBatch:
    """A compressed batch read as a stream, record by record (see _parse_record); the memory it
    uses is one chunk of the stream and the record being read."""

    def __init__(self, batch: DefaultRecordBatch, payload: bytes, room: _Room, position: int) -> None:
        self.batch, self.room, self.position = batch, room, position
        self.stream = _Stream(codecs.reader(batch.compression_type, payload))

    def __iter__(self) -> Iterator[DefaultRecord]:
        batch, read = self.batch, []
        try:
            for _ in range(_count(batch)):
                scanned = self.stream.consumed
                record = _parse_record(self.stream, batch, self.position)
                self.room.scan_left -= self.stream.consumed - scanned
                read.append(record.offset)
                yield record
        except (codecs.CorruptBatch, codecs.OversizedBlock, CorruptRecordException, ValueError,
                IndexError, EOFError) as exc:
            detail = (f"the record's {codecs.CODEC_NAMES[batch.compression_type]} batch cannot be read: "
                      f"{exc or exc.__class__.__name__}")
            yield from _unread(batch, UnreadBatch.of(detail), read)


class _Reader(Protocol):
    """Where records are parsed from: a stream (_Stream) or a batch in memory (_Memory)."""

    consumed: int

    def varint(self) -> int: ...

    def take(self, size: int) -> bytes: ...

    def skip(self, size: int) -> None: ...


class SkippedParts(str):
    """The header key that marks a record some of whose parts were not read because they are
    larger than any record the topic accepts: `sizes` maps "key", "value" or "headers" to the
    bytes skipped. A record whose value was skipped is `too_large`; one that lost only its key or
    some headers is an order like any other (the consumer needs neither)."""

    sizes: dict[str, int]

    @classmethod
    def of(cls, sizes: dict[str, int]) -> "SkippedParts":
        marker = cls("order-service.skipped")
        marker.sizes = sizes
        return marker

    def describe(self) -> str:
        parts = " and ".join(f"the record's {part} ({size} bytes)" for part, size in self.sizes.items())
        return (f"{parts}, decompressed, larger than the {MAX_SOURCE_RECORD_BYTES} bytes of any record "
                "the topic accepts: not read")


def skipped_parts(record: Any) -> dict[str, int]:
    """What was not read of `record` (see SkippedParts); empty for a record read whole."""
    for name, _ in record.headers:
        if isinstance(name, SkippedParts):
            return name.sizes
    return {}


def _parse_record(reader: "_Reader", batch: DefaultRecordBatch, position: int | None) -> DefaultRecord:
    """One record (Kafka's DefaultRecord format). A key, a value or headers larger than
    MAX_SOURCE_RECORD_BYTES (only compression gets them past the broker), or more headers than
    MAX_RECORD_HEADERS, are skipped, never held, and named in a SkippedParts header. A record
    below `position` is skipped whole (its offset is all that comes back)."""
    length = reader.varint()
    if length < 0:
        raise CorruptRecordException(f"a record of length {length}")
    end = reader.consumed + length
    reader.skip(1)  # attributes are not used
    timestamp = _timestamp(batch, reader.varint())
    offset = batch.base_offset + reader.varint()
    if position is not None and offset < position:
        reader.skip(end - reader.consumed)
        return DefaultRecord(offset, timestamp, batch.timestamp_type, None, None, [])
    skipped: dict[str, int] = {}
    key = _field(reader, "key", MAX_SOURCE_RECORD_BYTES, skipped)
    value = _field(reader, "value", MAX_SOURCE_RECORD_BYTES, skipped)
    headers = _headers(reader, end, skipped)
    if reader.consumed != end:
        raise CorruptRecordException(
            f"Invalid record size: expected to read {length} bytes in record payload, "
            f"but instead read {length + reader.consumed - end}")
    if skipped:
        headers.append((SkippedParts.of(skipped), b""))
    return DefaultRecord(offset, timestamp, batch.timestamp_type, key, value, headers)


def _field(reader: "_Reader", name: str, limit: int, skipped: dict[str, int]) -> bytes | None:
    length = reader.varint()
    if length < 0:
        return None
    if length > limit:
        skipped[name] = length
        reader.skip(length)
        return None
    return reader.take(length)


def _headers(reader: "_Reader", end: int, skipped: dict[str, int]) -> list[tuple[str, bytes | None]]:
    count = reader.varint()
    if count < 0:
        raise CorruptRecordException(f"Found invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    room = MAX_SOURCE_RECORD_BYTES
    for _ in range(min(count, MAX_RECORD_HEADERS)):
        name_length = reader.varint()
        if name_length < 0:
            raise CorruptRecordException(f"Invalid negative header key size {name_length}")
        if name_length > room:
            break
        name = reader.take(name_length)
        value_length = reader.varint()
        if value_length > room - name_length:
            break
        value = reader.take(value_length) if value_length >= 0 else None
        room -= name_length + max(0, value_length)
        headers.append((_header_key(name), value))
    else:
        return headers
    # Too many, or too large: the rest of the record is headers, skipped.
    skipped["headers"] = end - reader.consumed
    reader.skip(end - reader.consumed)
    return headers


class _Stream:
    """Varints and byte runs from a decompressed stream, read in chunks."""

    _CHUNK = 1024 * 1024

    def __init__(self, read: codecs.Read) -> None:
        self._read, self._buffer, self._position = read, b"", 0
        self.consumed = 0

    def _fill(self) -> None:
        if self._position == len(self._buffer):
            self._buffer, self._position = self._read(self._CHUNK), 0
            if not self._buffer:
                raise EOFError("the batch ends before its records do")

    def varint(self) -> int:
        """A zigzag varint, as Kafka writes lengths and deltas."""
        value = shift = 0
        while True:
            self._fill()
            byte = self._buffer[self._position]
            self._position += 1
            self.consumed += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return (value >> 1) ^ -(value & 1)
            shift += 7
            if shift > 63:
                raise CorruptRecordException("a varint of more than ten bytes")

    def take(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            self._fill()
            piece = self._buffer[self._position: self._position + size - len(out)]
            self._position += len(piece)
            out += piece
        self.consumed += size
        return bytes(out)

    def skip(self, size: int) -> None:
        if size < 0:
            raise CorruptRecordException(f"a record's parts pass its length by {-size} bytes")
        self.consumed += size
        while size:
            self._fill()
            step = min(size, len(self._buffer) - self._position)
            self._position += step
            size -= step


class _Memory:
    """The same reads on a batch decompressed in memory."""

    def __init__(self, buffer: bytes, position: int) -> None:
        self.buffer, self.consumed = buffer, position

    def varint(self) -> int:
        value, self.consumed = decode_varint(self.buffer, self.consumed)
        return value

    def take(self, size: int) -> bytes:
        start, end = self.consumed, self.consumed + size
        if end > len(self.buffer):
            raise CorruptRecordException(f"a length of {size} passes the end of the batch")
        self.consumed = end
        return self.buffer[start:end]

    def skip(self, size: int) -> None:
        if size < 0 or self.consumed + size > len(self.buffer):
            raise CorruptRecordException(f"a record's parts pass its end by {size} bytes")
        self.consumed += size


def _header_key(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableHeaderKey.from_bytes(raw)


def _read_msg(self: DefaultRecordBatch) -> DefaultRecord:
    """DefaultRecordBatch._read_msg: the next record of a batch in memory (see _parse_record)."""
    if type(self._buffer) is not bytes:
        # The library's bytearray, once per batch: a slice of bytes is each field's one copy.
        self._buffer = bytes(self._buffer)
    reader = _Memory(self._buffer, self._pos)
    record = _parse_record(reader, self, None)
    self._pos = reader.consumed
    return record


def install_record_reading() -> None:
    """Install the parser, the bounded reading of fetches and the handling of unreadable batches
    (idempotent)."""
    DefaultRecordBatch._read_msg = _read_msg
    Fetcher._unpack_message_set = _unpack_message_set
    Fetcher.fetched_records = _fetched_records
