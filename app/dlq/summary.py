"""`stats` and `show`: dead letters counted and listed once per source record (the contract's
identity), their extra copies counted apart. Memory stays bounded by the number of dead letters'
coordinates, never by their values."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.dlq.records import DeadLetter, Source, escape

# How much of each untrusted field `show` prints (bytes before escaping).
KEY_SHOWN_BYTES = 200
DETAIL_SHOWN_BYTES = 1000
VALUE_SHOWN_BYTES = 200


def iso_time(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stats:
    records: int = 0
    by_type: Counter = field(default_factory=Counter)  # source records (first copies)
    duplicates_by_type: Counter = field(default_factory=Counter)  # extra copies
    without_source: int = 0
    oldest: DeadLetter | None = None
    newest: DeadLetter | None = None

    @property
    def duplicates(self) -> int:
        return sum(self.duplicates_by_type.values())

    def as_json(self) -> dict[str, Any]:
        def moment(letter: DeadLetter | None) -> dict[str, Any] | None:
            if letter is None:
                return None
            return {"time": iso_time(letter.timestamp_ms), "dlq_partition": letter.dlq_partition,
                    "dlq_offset": letter.dlq_offset}

        return {
            "records": self.records,
            "source_records": sum(self.by_type.values()),
            "duplicates": self.duplicates,
            "by_type": dict(sorted(self.by_type.items())),
            "duplicates_by_type": dict(sorted(self.duplicates_by_type.items())),
            "without_source_coordinates": self.without_source,
            "oldest": moment(self.oldest),
            "newest": moment(self.newest),
        }


def collect_stats(letters: Iterable[DeadLetter]) -> Stats:
    stats = Stats()
    seen: set[Source] = set()
    for letter in letters:
        stats.records += 1
        label = letter.error_type_label
        if letter.source is None:
            stats.without_source += 1
            stats.by_type[label] += 1
        elif letter.source in seen:
            stats.duplicates_by_type[label] += 1
        else:
            seen.add(letter.source)
            stats.by_type[label] += 1
        if stats.oldest is None or letter.timestamp_ms < stats.oldest.timestamp_ms:
            stats.oldest = _without_payload(letter)
        if stats.newest is None or letter.timestamp_ms >= stats.newest.timestamp_ms:
            stats.newest = _without_payload(letter)
    return stats


def _without_payload(letter: DeadLetter) -> DeadLetter:
    return DeadLetter(letter.dlq_partition, letter.dlq_offset, letter.timestamp_ms, letter.source,
                      letter.error_type_header, None, None, None)


def matches(letter: DeadLetter, error_type: str | None, key: bytes | None) -> bool:
    return ((error_type is None or letter.error_type == error_type)
            and (key is None or letter.key == key))


def shown(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as `show` prints it: every untrusted field escaped and cut."""
    source = letter.source
    return {
        "source": None if source is None else {"topic": source.topic, "partition": source.partition,
                                               "offset": source.offset},
        "error_type": letter.error_type_label,
        "detail": escape(letter.detail, DETAIL_SHOWN_BYTES),
        "key": escape(letter.key, KEY_SHOWN_BYTES),
        "value_start": escape(letter.value, VALUE_SHOWN_BYTES),
        "value_bytes": None if letter.value is None else len(letter.value),
        "time": iso_time(letter.timestamp_ms),
        "dlq_partition": letter.dlq_partition,
        "dlq_offset": letter.dlq_offset,
        "copies": 1,
    }


def select_letters(letters: Iterable[DeadLetter], error_type: str | None, key: bytes | None,
                   limit: int) -> tuple[list[dict[str, Any]], int]:
    """The `limit` oldest matching source records (shown form, with their number of copies) and
    how many matched in all."""
    kept: list[dict[str, Any]] = []
    copies: Counter = Counter()
    matched = 0
    for letter in letters:
        # Without coordinates a dead letter is its own identity.
        identity = letter.source or ("dlq", letter.dlq_partition, letter.dlq_offset)
        copies[identity] += 1
        if copies[identity] > 1 or not matches(letter, error_type, key):
            continue
        matched += 1
        kept.append(shown(letter) | {"_identity": identity})
        if len(kept) > 2 * limit:
            kept = _oldest(kept, limit)
    kept = _oldest(kept, limit)
    for entry in kept:
        entry["copies"] = copies[entry.pop("_identity")]
    return kept, matched


def _oldest(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    entries.sort(key=lambda e: (e["time"], e["dlq_partition"], e["dlq_offset"]))
    return entries[:limit]
