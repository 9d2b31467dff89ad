"""Kafka's four codecs, decompressed as streams: a batch is read only as far as it is needed, so a
few KB on the wire never become gigabytes in memory, and every way a payload can be broken raises
one exception, CorruptBatch.

kafka-python-ng decompresses a whole batch in one call, which is what these replace (see
app/ingest/kafka_records.py). The Java client, and the broker when it validates a produce, read a
batch as a stream and stop after its last record: a payload can pass the broker and still be
broken past that point (trailing bytes, a wrong content checksum), which is why a consumer meets
such batches at all.
"""

import gzip
import io
import struct
from collections.abc import Callable, Iterator

from kafka.record.default_records import DefaultRecordBase

CODEC_NAMES = {DefaultRecordBase.CODEC_GZIP: "gzip", DefaultRecordBase.CODEC_SNAPPY: "snappy",
               DefaultRecordBase.CODEC_LZ4: "lz4", DefaultRecordBase.CODEC_ZSTD: "zstd"}
# xerial's framing of snappy, which the Java client writes: a 16-byte header, then blocks each
# preceded by its length (kafka.codec._detect_xerial_stream).
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16


class CorruptBatch(Exception):
    """The batch's payload cannot be decompressed (or is not what its codec says)."""


Read = Callable[[int], bytes]  # up to n bytes; fewer only at the end of the stream


def decompress(codec: int, payload: bytes, limit: int) -> bytes | None:
    """The whole payload decompressed, or None if it is longer than `limit` bytes (only
    `limit` + 1 bytes are ever produced)."""
    try:
        out = reader(codec, payload)(limit + 1)
    except OversizedBlock:
        return None
    return None if len(out) > limit else out


def reader(codec: int, payload: bytes) -> Read:
    """A stream of the payload's decompressed bytes; reading raises CorruptBatch on broken data."""
    opener = _OPENERS.get(codec)
    if opener is None:
        raise CorruptBatch(f"compression type {codec} is not one of Kafka's")
    return _guarded(codec, opener(payload))


def _guarded(codec: int, read: Read) -> Read:
    name = CODEC_NAMES[codec]

    def guarded_read(size: int) -> bytes:
        try:
            return read(size)
        except (CorruptBatch, OversizedBlock):
            raise
        # Each library raises its own kinds (zlib.error, EOFError, gzip.BadGzipFile, RuntimeError,
        # zstandard.ZstdError, snappy.UncompressError, struct.error...): all mean a broken payload.
        except Exception as exc:
            raise CorruptBatch(f"{name}: {exc.__class__.__name__}: {exc}") from None

    return guarded_read


def _gzip(payload: bytes) -> Read:
    return gzip.GzipFile(fileobj=io.BytesIO(payload)).read


def _zstd(payload: bytes) -> Read:
    import zstandard

    # The library's own window limit (128 MiB, as the broker's) stays: a frame asking for more
    # is refused before anything is allocated.
    return zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=True).read


def _lz4(payload: bytes) -> Read:
    import lz4.frame

    decompressor = lz4.frame.LZ4FrameDecompressor()
    pending = [payload]

    def read(size: int) -> bytes:
        out = bytearray()
        while len(out) < size and not decompressor.eof:
            if decompressor.needs_input and not pending:
                raise CorruptBatch("lz4: the frame ends before its end mark")
            data = pending.pop() if decompressor.needs_input else b""
            out += decompressor.decompress(data, max_length=size - len(out))
        # Bytes after the frame's end mark are ignored, as the Java client does.
        return bytes(out)

    return read


def _snappy(payload: bytes) -> Read:
    blocks = _xerial_blocks(payload) if payload.startswith(_XERIAL_MAGIC) else iter([payload])
    return _Chunks(_snappy_block(block) for block in blocks).read


class _Chunks:
    """read(n) over chunks produced one at a time (a snappy block is decompressed whole)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._position = 0

    def read(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            if self._position == len(self._chunk):
                self._chunk, self._position = next(self._chunks, None), 0
                if self._chunk is None:
                    self._chunk = b""
                    break
            piece = self._chunk[self._position: self._position + size - len(out)]
            self._position += len(piece)
            out += piece
        return bytes(out)


def _xerial_blocks(payload: bytes):
    position = _XERIAL_HEADER_BYTES
    while position < len(payload):
        (length,) = struct.unpack_from("!i", payload, position)
        if length < 0 or position + 4 + length > len(payload):
            raise CorruptBatch(f"snappy: a block of {length} bytes at {position} passes the payload's end")
        yield payload[position + 4: position + 4 + length]
        position += 4 + length


# A snappy block can expand at most about 21 times, and its first bytes say by how much: one that
# declares more than this is not decompressed (decompress() answers "too large").
MAX_SNAPPY_BLOCK_BYTES = 64 * 1024 * 1024


class OversizedBlock(Exception):
    """A snappy block that declares more than MAX_SNAPPY_BLOCK_BYTES."""


def _snappy_block(block: bytes) -> bytes:
    import snappy

    if _uvarint(block) > MAX_SNAPPY_BLOCK_BYTES:
        raise OversizedBlock
    return snappy.decompress(block)


def _uvarint(data: bytes) -> int:
    """Snappy's preamble: the uncompressed length, an unsigned little-endian base-128 varint."""
    value = 0
    for index, byte in enumerate(data[:10]):
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value
    raise CorruptBatch("snappy: no length preamble")


_OPENERS: dict[int, Callable[[bytes], Read]] = {
    DefaultRecordBase.CODEC_GZIP: _gzip,
    DefaultRecordBase.CODEC_ZSTD: _zstd,
    DefaultRecordBase.CODEC_LZ4: _lz4,
    DefaultRecordBase.CODEC_SNAPPY: _snappy,
}
