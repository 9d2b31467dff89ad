"""Record batches built byte by byte and produced as they are, as a client other than
kafka-python (or an attacker) can: a payload compressed with any codec and any bytes after it, a
decompression bomb, offsets with gaps. The broker checks the batch's CRC and reads its records;
what it does not read (bytes after the last record) it stores unchecked."""

import struct
import time
from collections.abc import Callable, Iterable

from kafka import TopicPartition
from kafka.protocol.produce import ProduceRequest
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import calc_crc32c, encode_varint

from app.kafka_clients import new_client
from harness.kafka import settings
from harness.waiting import wait_until

GZIP, SNAPPY, LZ4, ZSTD = (DefaultRecordBatch.CODEC_GZIP, DefaultRecordBatch.CODEC_SNAPPY,
                           DefaultRecordBatch.CODEC_LZ4, DefaultRecordBatch.CODEC_ZSTD)
_HEADER = DefaultRecordBatch.HEADER_STRUCT
# The first produce version that may carry zstd.
_PRODUCE_VERSION = 7

Record = tuple[bytes | None, bytes | None]


def records_section(records: Iterable[Record], offset_deltas: list[int] | None = None) -> bytes:
    """The records of a v2 batch as they are before compression (Kafka's DefaultRecord form, no
    headers): what a codec compresses."""
    records = list(records)
    out = bytearray()
    for delta, (key, value) in zip(offset_deltas or range(len(records)), records, strict=True):
        body = bytearray(b"\x00")  # attributes
        encode_varint(0, body.append)  # timestamp delta
        encode_varint(delta, body.append)
        for part in (key, value):
            encode_varint(-1 if part is None else len(part), body.append)
            body += part or b""
        encode_varint(0, body.append)  # no headers
        encode_varint(len(body), out.append)
        out += body
    return bytes(out)


def record_batch(records: Iterable[Record], codec: int, compress: Callable[[bytes], bytes],
                 offset_deltas: list[int] | None = None) -> bytes:
    """A v2 batch of `records` whose payload is `compress(the records' bytes)`, flagged with
    `codec`. `offset_deltas` gives the records' offsets in the batch (gaps, as compaction leaves
    them); by default 0, 1, 2..."""
    records = list(records)
    deltas = offset_deltas or list(range(len(records)))
    now = int(time.time() * 1000)
    batch = bytearray(_HEADER.size) + compress(records_section(records, deltas))
    _HEADER.pack_into(batch, 0, 0, len(batch) - DefaultRecordBatch.AFTER_LEN_OFFSET, 0, 2, 0, codec,
                      deltas[-1], now, now, -1, -1, -1, len(records))
    # The CRC covers the batch from its attributes on (the broker checks it when it takes it).
    crc = calc_crc32c(bytes(memoryview(batch)[DefaultRecordBatch.ATTRIBUTES_OFFSET:]))
    struct.pack_into(">I", batch, DefaultRecordBatch.CRC_OFFSET, crc)
    return bytes(batch)


class BatchRefused(AssertionError):
    """The broker refused a batch (its error code is in the message)."""


def produce_batches(bootstrap: str, topic: str, partition: int, batches: Iterable[bytes]) -> None:
    """Send each batch as it is, one produce request each (the protocol allows one batch per
    partition and request), and wait for the broker's acknowledgement of all of them."""
    client = new_client(settings(bootstrap), client_id="harness-raw-batches")
    tp = TopicPartition(topic, partition)
    try:
        client.add_topic(topic)
        for batch in batches:
            # A new topic's leader may not know it leads yet: such a refusal is retried.
            error_code = wait_until(lambda batch=batch: _send(client, tp, batch), 30,
                                    f"{topic}-{partition} took a batch")
            if error_code != _ACCEPTED:
                raise BatchRefused(f"the broker refused the batch: error code {error_code}")
    finally:
        client.close()


_ACCEPTED = "accepted"
# UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER: the topic is still being set up.
_NOT_READY = (3, 6)


def _send(client, tp: TopicPartition, batch: bytes) -> str | int | None:
    """_ACCEPTED, the broker's error code, or None to try again."""
    found = _leader(client, tp)
    if found is None:
        return None
    request = ProduceRequest[_PRODUCE_VERSION](transactional_id=None, required_acks=-1, timeout=30_000,
                                               topics=[(tp.topic, [(tp.partition, batch)])])
    future = client.send(found[0], request)
    client.poll(future=future, timeout_ms=60_000)
    assert future.succeeded(), f"no answer to a produce request: {future.exception!r}"
    error_code = future.value.topics[0][1][0][1]
    if error_code in _NOT_READY:
        return None
    return _ACCEPTED if error_code == 0 else error_code


def _leader(client, tp: TopicPartition) -> tuple[int] | None:
    """(the partition's leader,) once it is known and connected; None until then."""
    client.poll(future=client.cluster.request_update(), timeout_ms=5_000)
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader < 0:
        return None
    deadline = time.monotonic() + 10
    while not client.ready(leader) and time.monotonic() < deadline:
        client.poll(timeout_ms=100)
    return (leader,) if client.ready(leader) else None
